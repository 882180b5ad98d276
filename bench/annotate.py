"""Where one mode's instructions per cycle differ from another's, from the run's own data.

Two views, both differences of per-cycle figures between two modes:

* C functions: ``callgrind_annotate`` (self cost, per function) of the two
  counted windows of :mod:`bench.instructions`, differenced like the totals
  (``(large window - small window) / (large - small)``);
* Python functions: opcodes per cycle each function executes in its own
  frame (:mod:`bench.opcodes`), and, summed, per package.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

#: ``  1,234,567 (12.34%)  /path/file.c:function'2 [/path/lib.so]``
LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)(?:\s+\[(.+)\])?\s*$")


def _name(location: str, obj: str | None) -> str:
    """``file.c:function`` without directories or callgrind's recursion suffix (``'2``)."""
    file, _, function = location.rpartition(":")
    function = re.sub(r"'\d+$", "", function)
    if not file or file == "???":
        file = Path(obj).name if obj else "???"
    return f"{Path(file).name}:{function}"


def _countable(path: Path) -> Path:
    """A copy of the dump *path* that ``callgrind_annotate`` reads right.

    A dump taken mid-run (``--dump-before``) records the calls still active
    with ``calls=0``; callgrind_annotate 3.19 adds the cost line after a
    ``calls=0`` to the caller's *self* cost (it only treats ``calls>0`` as a
    call), so every frame on the stack would show the whole window as its
    own. Counting those arcs as one call puts their cost where it belongs.
    """
    fixed = path.with_name(path.name + ".fixed")
    text = path.read_text(encoding="utf-8")
    fixed.write_text(re.sub(r"^calls=0 ", "calls=1 ", text, flags=re.M), encoding="utf-8")
    return fixed


def functions(path: Path, keep: Path | None = None) -> dict[str, int]:
    """Self instructions per C function in the callgrind file *path* (the text also written to *keep*)."""
    fixed = _countable(path)
    try:
        done = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(fixed)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    finally:
        fixed.unlink()
    if keep is not None:
        keep.write_text(done.stdout, encoding="utf-8")
    out: dict[str, int] = defaultdict(int)
    for line in done.stdout.splitlines():
        match = LINE.match(line)
        if match and "PROGRAM TOTALS" not in line:
            out[_name(match.group(2), match.group(3))] += int(match.group(1).replace(",", ""))
    return dict(out)


def per_cycle(small: dict[str, int], large: dict[str, int], cycles: int) -> dict[str, float]:
    """Each function's instructions per cycle: its large-window count minus its small-window count."""
    return {name: (large.get(name, 0) - small.get(name, 0)) / cycles for name in small.keys() | large.keys()}


def differences(mine: dict[str, float], theirs: dict[str, float], top: int) -> list[list[Any]]:
    """``[name, mine, theirs, mine - theirs]`` of the *top* largest differences either way, largest first."""
    rows = [[name, mine.get(name, 0.0), theirs.get(name, 0.0)] for name in mine.keys() | theirs.keys()]
    for row in rows:
        row.append(row[1] - row[2])
    rows.sort(key=lambda row: row[3], reverse=True)
    extra = [row for row in rows if row[3] > 0][:top]
    saved = [row for row in reversed(rows) if row[3] < 0][:top]
    return extra + saved[::-1]


def python_per_cycle(counted: dict[str, Any]) -> dict[str, float]:
    """Opcodes per cycle per Python function, from :func:`bench.opcodes.count`'s result."""
    cycles = counted["cycles"]
    return {name: value[0] / cycles for name, value in counted["functions"].items()}


def package(label: str) -> str:
    """The package part of an opcode label: ``django/db/backends/base/base.py:236 f`` -> ``django/db/backends``."""
    path = label.split(":", 1)[0]
    parts = path.split("/")
    depth = 3 if parts[0] == "django" else 2
    return "/".join(parts[: min(depth, len(parts) - 1)]) or path


def by_package(per_function: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for name, value in per_function.items():
        out[package(name)] += value
    return dict(out)
