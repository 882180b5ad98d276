"""Memory: RSS of a process holding N connections, and traced allocations over many cycles.

Each measurement runs in a fresh process of its own and prints one JSON object:

``python -m bench.memory rss MODE N``
    N threads each run one request cycle at the same moment (a barrier inside
    the cycle, so N connections are open at once), then stay alive while the
    RSS is read. B keeps each thread's persistent connection; the pools (C, D)
    hold the N connections, returned, in the pool. Both processes thus have N
    threads, N server connections and the same work done: the difference is
    what holding connections the mode's way costs. The RSS before, after one
    cycle on the main thread that leaves no connection held (so every module
    a mode imports at its first connection is loaded), is reported too
    (``baseline_kib``).
``python -m bench.memory core PAIRS``
    tracemalloc over PAIRS checkout + checkin pairs of the pool core with fake
    connections, configured as the backend configures it (reset at checkin,
    zero-round-trip validation at checkout).
``python -m bench.memory django MODE CYCLES``
    tracemalloc over CYCLES Django request cycles (:func:`bench.cycles.cycles`).

Traced growth is measured between snapshots after a warm-up, half-way and at
the end (the snapshots' own memory excluded), after ``gc.collect()``; a leak
of one small object per cycle would show as tens of kilobytes per 1000 cycles
in each half.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import tracemalloc
from collections.abc import Callable
from typing import Any

#: Warm-up before the first snapshot, in units of the workload (pairs or cycles).
WARMUP_FRACTION = 0.1
#: Frames kept per traced allocation (enough to see ours under Django's and MySQLdb's).
FRAMES = 12


def _short(location: str) -> str:
    for marker in ("site-packages/", "python3.11/", "/wt10/"):
        if marker in location:
            return location.split(marker, 1)[1]
    return location


def rss_kib() -> int:
    """This process's resident set size (``VmRSS``) in KiB."""
    with open(f"/proc/{os.getpid()}/status", encoding="utf-8") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def _setup(mode: str) -> None:
    os.environ["DMP_BENCH_MODE"] = mode
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()


def _warm(model: Any, sender: type) -> None:
    """One cycle on this thread, then no connection held: every module the mode imports lazily
    (at its first connection) is loaded before the baseline, so the baseline differs by modes' code only."""
    from django.core.signals import request_finished, request_started
    from django.db import connections

    request_started.send(sender=sender)
    model.objects.get(pk=1)
    request_finished.send(sender=sender)
    wrapper: Any = connections["default"]
    wrapper.close()
    if hasattr(wrapper, "close_pool"):
        wrapper.close_pool()  # D: the pool starts empty again (C keeps its one idle connection)


def rss(mode: str, count: int) -> dict[str, Any]:
    _setup(mode)
    from django.core.signals import request_finished, request_started

    from bench.cycles import Cycle
    from bench.site import counter
    from bench.site.models import Item

    _warm(Item, Cycle)
    gc.collect()
    baseline = rss_kib()
    inside, done, leave = threading.Barrier(count), threading.Barrier(count + 1), threading.Event()

    def body(index: int) -> None:
        request_started.send(sender=Cycle)
        Item.objects.get(pk=index + 1)
        inside.wait()  # all N hold a connection at once
        request_finished.send(sender=Cycle)
        done.wait()
        leave.wait()

    threads = [threading.Thread(target=body, args=(i,), name=f"memory-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    done.wait()
    gc.collect()
    held = rss_kib()
    leave.set()
    for thread in threads:
        thread.join()
    return {
        "mode": mode,
        "connections": count,
        "opened": counter.read(os.environ.get("DMP_BENCH_CONNECTS_FILE", "")),
        "baseline_kib": baseline,
        "rss_kib": held,
    }


def _growth(first: tracemalloc.Snapshot, last: tracemalloc.Snapshot, *filters: tracemalloc.Filter) -> int:
    stats = last.filter_traces(filters).compare_to(first.filter_traces(filters), "lineno")
    return sum(stat.size_diff for stat in stats)


def traced(run: Callable[[int], Any], total: int) -> dict[str, Any]:
    """Traced memory growth over *total* units of *run* after a warm-up of 10 % more.

    Snapshots after the warm-up, half-way and at the end: growth proportional
    to the work shows in both halves alike; a one-off (a cache filled once, a
    timer's first run) only in the first. ``ours``: the growth of allocations
    with a frame of ``django_mysql_pooled`` on their stack (up to
    :data:`FRAMES` deep), whatever library made them.
    """
    warmup = max(1, int(total * WARMUP_FRACTION))
    run(warmup)  # untraced: connections open, caches warm
    tracemalloc.start(FRAMES)
    run(warmup)  # traced: whatever a first traced pass allocates once
    snapshots, sizes = [], []
    for part in (0, total // 2, total - total // 2):
        run(part)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        snapshots.append(tracemalloc.take_snapshot())
        sizes.append((before, tracemalloc.get_traced_memory()[0]))  # a snapshot's own size excluded
    tracemalloc.stop()
    first, middle, last = snapshots
    halves = [sizes[1][0] - sizes[0][1], sizes[2][0] - sizes[1][1]]
    own = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__))
    top = [
        [_short(str(stat.traceback[0])), stat.size_diff, stat.count_diff]
        for stat in last.filter_traces(own).compare_to(first.filter_traces(own), "lineno")[:5]
        if stat.size_diff > 0
    ]
    ours = tracemalloc.Filter(True, "*/django_mysql_pooled/*", all_frames=True)
    ours_halves = [_growth(first, middle, ours), _growth(middle, last, ours)]
    half = (total - total // 2) / 1000
    return {
        "units": total,
        "growth_bytes": sum(halves),
        "first_half_bytes": halves[0],
        "second_half_bytes": halves[1],
        "second_half_per_1k": halves[1] / half,
        "ours_first_half_bytes": ours_halves[0],
        "ours_second_half_bytes": ours_halves[1],
        "ours_second_half_per_1k": ours_halves[1] / half,
        "top_growth": top,
    }


def core(pairs: int) -> dict[str, Any]:
    from bench.poolcore import FakeConnection
    from django_mysql_pooled.pool.pool import ConnectionPool

    pool: ConnectionPool[FakeConnection] = ConnectionPool(
        lambda timeout: FakeConnection(),
        reset=lambda conn: "reset_connection",
        reset_on="checkin",
        alive=lambda conn: True,
        close=FakeConnection.close,
        max_size=8,
    )

    def run(count: int) -> None:
        get, put = pool.getconn, pool.putconn
        for _ in range(count):
            put(get())

    try:
        return traced(run, pairs)
    finally:
        pool.close()


def django_cycles(mode: str, count: int) -> dict[str, Any]:
    _setup(mode)
    from django.db import connections

    from bench.cycles import cycles

    try:
        return {"mode": mode, **traced(cycles, count)}
    finally:
        connections.close_all()


def main(argv: list[str]) -> int:
    kind = argv[0]
    if kind == "rss":
        result = rss(argv[1], int(argv[2]))
    elif kind == "core":
        result = core(int(argv[1]))
    elif kind == "django":
        result = django_cycles(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown measurement {kind!r}: rss, core or django")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
