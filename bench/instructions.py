"""Client instructions per request cycle, counted by ``valgrind --tool=callgrind``.

Time on a shared 2-core machine moves by tens of percent with whatever else
runs; the instructions a process executes do not (the same count to ~1 %
whatever the load). Each mode runs :func:`main` once under callgrind: Django's
start-up and a warm-up, then a window of *small* cycles, then a window of
*large* cycles. Callgrind dumps its counters at the start of every call to
``os.getpgrp()`` (``--dump-before=os_getpgrp``), which nothing else in the
process calls, so each window's count is exact; the difference of the two
windows divided by the difference in cycles is the cost of one cycle, with
start-up, warm-up, exit and anything fixed per window cancelled out.

The figure counts the thread that runs the cycles (``--separate-threads=yes``,
thread 1). D runs here with ``num_workers = 0``, so that the reset and
restore at checkin, which its return workers would run on another thread
(plus a hand-over through a queue), run and are counted in that thread. The
pool's background threads (maintenance every second, the reset guard) do
work per second of wall time, not per cycle, and under callgrind's ~50x
slowdown a window lasts ~50x longer than it would natively, so counting
them would make the figure depend on the machine's load; their count is
reported beside it (``background``: their whole run, start-up included, as
callgrind dumps only the marking thread at each marker), not added to it.

``python -m bench.instructions MODE WARMUP SMALL LARGE`` is what runs under
valgrind (one thread, ``cycles.cycles``); :func:`measure` drives it.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The C function whose entry makes callgrind dump (``os.getpgrp``); see :func:`mark`.
MARKER = "os_getpgrp"


def mark() -> None:
    """A window edge: a full garbage collection, then callgrind dumps its counters.

    The collection puts every window at the same phase of the collector's
    generations: without it a full collection lands in one window or the other
    depending on allocations made long before (the environment's size shifts it),
    and with small windows one such lump moves the per-cycle figure by ~3 %.
    Each window ends with one full collection, which the difference cancels.
    """
    gc.collect()
    os.getpgrp()


def main(mode: str, warmup: int, small: int, large: int) -> int:
    os.environ["DMP_BENCH_MODE"] = mode
    # D's reset at checkin runs in the cycle's thread, the one counted (see the module docstring).
    os.environ["DMP_BENCH_NUM_WORKERS"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    from django.db import connections

    from bench import cycles

    cycles.cycles(warmup)  # connection opened, caches warm
    mark()  # dump 1: start-up and warm-up
    cycles.cycles(small)
    mark()  # dump 2: the small window
    cycles.cycles(large)
    mark()  # dump 3: the large window
    connections.close_all()
    return 0


def _total(path: Path) -> int:
    match = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {path}")
    return int(match.group(1))


def run_marked(command: list[str], env: dict[str, str], out: Path, dumps: int) -> list[int]:
    """Run *command* under callgrind, dumping at each :func:`mark`; the instructions of each of the
    *dumps* windows of the marking thread (the first: start-up to the first mark).

    :raises RuntimeError: valgrind is missing, the run failed, or it did not mark *dumps* times.
    """
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (Debian: apt-get install valgrind)")
    for old in [*out.parent.glob(f"{out.name}.*"), *out.parent.glob(f"{out.name}-*")]:
        old.unlink()
    valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", f"--dump-before={MARKER}"]
    valgrind += ["--compress-strings=no", "--separate-threads=yes"]  # dumps self-contained; a file per thread
    done = subprocess.run(
        [*valgrind, *command],
        check=False,
        env={**env, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"callgrind run of {' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    windows = [out.with_name(f"{out.name}.{n}-01") for n in range(1, dumps + 1)]
    if not all(w.exists() for w in windows) or out.with_name(f"{out.name}.{dumps + 1}-01").exists():
        raise RuntimeError(f"expected exactly {dumps} dumps at {MARKER} in {out.parent}; something else calls it")
    return [_total(window) for window in windows]


def run_one(mode: str, warmup: int, small: int, large: int, env: dict[str, str], out_dir: Path) -> dict[str, Any]:
    """One callgrind run of *mode*; the two windows' totals and the paths of their dumps."""
    out = out_dir / f"callgrind.{mode}"
    command = [sys.executable, "-m", "bench.instructions", mode, str(warmup), str(small), str(large)]
    startup, small_total, large_total = run_marked(command, {**env, "DMP_BENCH_MODE": mode}, out, dumps=3)
    background = sum(_total(p) for p in out_dir.glob(f"{out.name}-*") if not p.name.endswith("-01"))
    return {
        "instructions_per_cycle": (large_total - small_total) / (large - small),
        "small": small_total,
        "large": large_total,
        "background": background,
        "startup": startup,
        "cycles": {"warmup": warmup, "small": small, "large": large},
        "files": {"small": str(out.with_name(f"{out.name}.2-01")), "large": str(out.with_name(f"{out.name}.3-01"))},
    }


def measure(
    modes: list[str] | tuple[str, ...], warmup: int, small: int, large: int, env: dict[str, str], out_dir: Path
) -> dict[str, Any]:
    """Instructions per cycle of each mode: ``(I(large window) - I(small window)) / (large - small)``.

    :param env: the environment of the worker (``BENCH_DB_*``, ``DMP_BENCH_PORT``; :func:`bench.workerctl.mode_env`).
    :param out_dir: where the callgrind files go (kept for ``callgrind_annotate``).
    :raises RuntimeError: valgrind or a run failed.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    return {mode: run_one(mode, warmup, small, large, env, out_dir) for mode in modes}


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], *(int(a) for a in sys.argv[2:5])))
