"""Python opcodes executed per request cycle, per function: where a mode's instructions go.

Callgrind sees the interpreter's C functions, not which Python function made
them run. This counts, with ``sys.settrace`` and ``frame.f_trace_opcodes``,
every bytecode each Python function executes in its own frame (self, not
inclusive) over *count* cycles after a warm-up, in the thread running the
cycles (the pool's background threads are not traced; callgrind counts them).
The count is deterministic: the same code path gives the same opcodes,
whatever the machine's load.

``python -m bench.opcodes MODE WARMUP COUNT`` prints one JSON object:
``{"cycles": COUNT, "opcodes": TOTAL, "functions": {"module:line qualname": [opcodes, calls]}}``.
"""

from __future__ import annotations

import json
import os
import site
import sys
import sysconfig
from collections import Counter
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Path prefixes stripped from file names, longest first.
PREFIXES = sorted(
    {*site.getsitepackages(), sysconfig.get_paths()["stdlib"], str(ROOT)},
    key=len,
    reverse=True,
)


def short(filename: str) -> str:
    """*filename* relative to site-packages, the standard library or the repository."""
    for prefix in PREFIXES:
        if filename.startswith(prefix + os.sep):
            return filename[len(prefix) + 1 :]
    return filename


def label(code: CodeType) -> str:
    return f"{short(code.co_filename)}:{code.co_firstlineno} {code.co_qualname}"


def count(run: Any, cycles: int) -> dict[str, Any]:
    """Trace ``run(cycles)`` in this thread: opcodes and calls per code object."""
    opcodes: Counter[CodeType] = Counter()
    calls: Counter[CodeType] = Counter()

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            opcodes[frame.f_code] += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        calls[frame.f_code] += 1  # a generator's resumption counts as a call
        return local

    sys.settrace(tracer)
    try:
        run(cycles)
    finally:
        sys.settrace(None)
    functions: dict[str, list[int]] = {}
    for code in opcodes.keys() | calls.keys():
        entry = functions.setdefault(label(code), [0, 0])
        entry[0] += opcodes[code]
        entry[1] += calls[code]
    return {"cycles": cycles, "opcodes": sum(opcodes.values()), "functions": functions}


def main(mode: str, warmup: int, cycles: int) -> int:
    os.environ["DMP_BENCH_MODE"] = mode
    # D's reset at checkin runs in the cycle's thread, the one counted (see the module docstring).
    os.environ["DMP_BENCH_NUM_WORKERS"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")
    import django

    django.setup()
    from django.db import connections

    from bench import cycles as workload

    workload.cycles(warmup)
    result = count(workload.cycles, cycles)
    connections.close_all()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
