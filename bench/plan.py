"""How long and how often each workload runs: ``quick``, ``medium`` and ``full`` plans."""

from __future__ import annotations

import dataclasses

#: Modes, in the order tables and charts show them.
MODES = ("A", "B", "C", "D", "D0")
#: Server connections a run holds at its peak: the five gunicorns of the http
#: workload (B, C, D, D0 keep 2 x 8 each; A up to 16 at a time).
PEAK_CONNECTIONS = 80
#: Pooled modes (a checkout can wait), for the fairness workload.
POOLED = ("C", "D", "D0")
#: The modes of the TLS workload: a new TLS connection per request against the pool.
TLS_MODES = ("A", "D")
#: D with as many connections as B holds at :data:`EQUAL_THREADS` threads (one per thread):
#: the equal-connection-count comparison, run at that thread count only.
EQUAL = "D16"
EQUAL_THREADS = 16
#: Connections the memory workload's process holds (50 threads, each with one).
MEMORY_CONNECTIONS = 50


@dataclasses.dataclass(frozen=True)
class Plan:
    """Durations are seconds."""

    name: str
    repeats: int
    micro_threads: tuple[int, ...]
    micro_warmup: float
    micro_duration: float
    http_warmup: float
    http_duration: float
    rtt_delays_ms: tuple[float, ...]
    rtt_threads: tuple[int, ...]
    rtt_repeats: int
    rtt_http: bool
    roundtrip_cycles: int
    spike_threads: int
    spike_connect_ms: float
    spike_repeats: int
    pool_duration: float
    fairness_duration: float
    phase_cycles: int = 2000
    max_size: int = 8
    http_workers: int = 2
    http_threads: int = 8
    spike_min_size: int = 5
    spike_max_size: int = 50
    spike_work_ms: float = 2.0
    fairness_threads: int = 32
    fairness_work_ms: float = 2.0
    pool_threads: tuple[int, ...] = (1, 16)
    tls_threads: tuple[int, ...] = (1, 16)
    # instructions (callgrind): modes, and cycles of warm-up and of the two counted windows
    instruction_modes: tuple[str, ...] = MODES
    instruction_cycles: tuple[int, int, int] = (200, 200, 1000)
    # uses of each part of D's checkout counted on its own (bench.components)
    component_uses: int = 500
    # per-function opcode counts of B and D (sys.settrace), cycles after the warm-up
    opcode_cycles: int = 500
    # memory: tracemalloc over pool-core pairs (fake connections) and Django cycles
    memory_core_pairs: int = 100_000
    memory_cycles: int = 5000


QUICK = Plan(
    name="quick",
    repeats=1,
    micro_threads=(1, 16),
    micro_warmup=0.1,
    micro_duration=0.3,
    http_warmup=0.0,
    http_duration=1.0,
    rtt_delays_ms=(0.5,),
    rtt_threads=(1,),
    rtt_repeats=1,
    rtt_http=False,
    roundtrip_cycles=20,
    spike_threads=50,
    spike_connect_ms=150.0,
    spike_repeats=1,
    pool_duration=0.2,
    fairness_duration=0.5,
    phase_cycles=300,
    tls_threads=(1,),
    instruction_modes=("B", "D"),
    instruction_cycles=(20, 20, 100),
    component_uses=30,
    opcode_cycles=30,
    memory_core_pairs=20_000,
    memory_cycles=300,
)

MEDIUM = Plan(
    name="medium",
    repeats=3,
    micro_threads=(1, 4, 16, 32),
    micro_warmup=0.3,
    micro_duration=1.0,
    http_warmup=1.5,
    http_duration=4.0,
    rtt_delays_ms=(0.2, 0.5),
    rtt_threads=(1, 16),
    rtt_repeats=2,
    rtt_http=True,
    roundtrip_cycles=200,
    spike_threads=50,
    spike_connect_ms=150.0,
    spike_repeats=3,
    pool_duration=0.5,
    fairness_duration=2.0,
    instruction_cycles=(100, 100, 400),
    component_uses=200,
    opcode_cycles=200,
    memory_cycles=2000,
)

FULL = Plan(
    name="full",
    repeats=5,
    micro_threads=(1, 4, 16, 32),
    micro_warmup=0.5,
    micro_duration=3.0,
    http_warmup=3.0,
    http_duration=10.0,
    rtt_delays_ms=(0.2, 0.5),
    rtt_threads=(1, 16),
    rtt_repeats=3,
    rtt_http=True,
    roundtrip_cycles=1000,
    spike_threads=50,
    spike_connect_ms=150.0,
    spike_repeats=5,
    pool_duration=1.0,
    fairness_duration=5.0,
    phase_cycles=5000,
)

PLANS = {p.name: p for p in (QUICK, MEDIUM, FULL)}


def rotated(items: tuple[str, ...], shift: int) -> list[str]:
    """*items* rotated by *shift*, so no mode always runs first (or last) in a round."""
    k = shift % len(items)
    return list(items[k:] + items[:k])
