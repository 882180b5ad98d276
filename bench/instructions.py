"""Client instructions per request cycle, counted by ``valgrind --tool=callgrind``.

Time on a shared 2-core machine moves by tens of percent with whatever else
runs; the instructions a process executes do not (the same count to ~1 %
whatever the load). Each mode runs :func:`main` twice under callgrind, with
*small* and *large* cycle counts after the same warm-up; the difference
divided by the difference in cycles is the cost of one cycle, with Django's
start-up, the warm-up and the exit cancelled out. Every thread of the
process is counted: for D that includes the reset and restore at checkin
and the pool's background threads.

``python -m bench.instructions MODE CYCLES`` is what runs under valgrind
(one thread, ``cycles.cycles``); :func:`measure` drives it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Cycles before counting starts mattering: connection opened, caches warm.
WARMUP = 50


def main(mode: str, count: int) -> int:
    os.environ["DMP_BENCH_MODE"] = mode
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    from django.db import connections

    from bench import cycles

    cycles.cycles(WARMUP + count)
    connections.close_all()
    return 0


def _count(mode: str, count: int, env: dict[str, str], out_dir: Path) -> int:
    out = out_dir / f"callgrind.{mode}.{count}"
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "bench.instructions",
            mode,
            str(count),
        ],
        check=True,
        env={**env, "DMP_BENCH_MODE": mode, "PYTHONHASHSEED": "0"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def measure(modes: list[str], small: int, large: int, env: dict[str, str], keep: Path | None = None) -> dict[str, Any]:
    """Instructions per cycle of each mode: ``(I(large) - I(small)) / (large - small)``.

    :param env: the environment of the worker (``BENCH_DB_*``, ``DMP_BENCH_PORT``).
    :param keep: a directory to keep the callgrind files in (for ``callgrind_annotate``).
    :raises subprocess.CalledProcessError: valgrind or a run failed.
    """
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = keep or Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        for mode in modes:
            low, high = _count(mode, small, env, out_dir), _count(mode, large, env, out_dir)
            results[mode] = {"instructions_per_cycle": (high - low) / (large - small), "small": low, "large": high}
    return results


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], int(sys.argv[2])))
