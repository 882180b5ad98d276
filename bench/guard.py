"""CI regression guard: D's client instructions per request cycle, counted under callgrind.

``python -m bench.guard`` counts modes B and D with small cycle counts (about
half a minute under callgrind on 2 cores) and fails when D exceeds either
bound below. Instruction counts repeat to about 1 % whatever the machine's
load, so the bounds can be generous and the guard still never flaps; it
catches a change that makes every checkout markedly dearer, not drift of a
few percent (which ``python -m bench`` reports against the issue's target,
D <= 1.00 x B). Never a timed test.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import db, instructions
from bench.modes import Server
from bench.workerctl import mode_env

#: D may cost at most this many times B's instructions per cycle, measured in the same run
#: (measured 1.20 when the guard was written; the issue's target is 1.00).
MAX_RATIO = 1.5
#: An absolute ceiling too, so that a B made dearer (a Django upgrade) cannot carry D with it:
#: D measured 1.22 M instructions per cycle on Python 3.11 / Django 5.2 / mysqlclient 2.3 when
#: the guard was written; raise it deliberately, with the reason, if the stack changes.
MAX_INSTRUCTIONS = 1_800_000
#: Cycles: warm-up, small window, large window.
CYCLES = (20, 20, 100)
RUN_DIR = Path(__file__).resolve().parent / ".run" / "guard"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.guard", description=__doc__)
    parser.add_argument("--max-ratio", type=float, default=MAX_RATIO, help=f"D/B bound (default {MAX_RATIO})")
    parser.add_argument("--max-instructions", type=int, default=MAX_INSTRUCTIONS, help="D's absolute bound")
    args = parser.parse_args(argv)
    server = Server.from_env()
    db.prepare(server)
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    env = mode_env("D", server, port=server.port, max_size=8, min_size=0, connects=RUN_DIR / "connects")
    counted = instructions.measure(("B", "D"), *CYCLES, env, RUN_DIR)
    d, b = (counted[mode]["instructions_per_cycle"] for mode in ("D", "B"))
    print(f"instructions per cycle: B {b:,.0f}, D {d:,.0f}, D/B {d / b:.3f} (cycles {CYCLES})")
    failures = []
    if d / b > args.max_ratio:
        failures.append(f"D/B = {d / b:.3f} exceeds {args.max_ratio}")
    if d > args.max_instructions:
        failures.append(f"D = {d:,.0f} exceeds {args.max_instructions:,}")
    for failure in failures:
        print(f"bench.guard: FAILED: {failure}; see bench/annotate.py and python -m bench --only instructions")
    if not failures:
        print(f"bench.guard: ok (D/B <= {args.max_ratio}, D <= {args.max_instructions:,})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
