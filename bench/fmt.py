"""Number and table formatting for the results page."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from bench.stats import ratios, spread


def num(x: float) -> str:
    if math.isnan(x):
        return "–"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def mmm(values: Sequence[float]) -> str:
    """``min / median / max`` of the repeats."""
    s = spread(values)
    if math.isnan(s["median"]):
        return "–"
    return f"{num(s['min'])} / **{num(s['median'])}** / {num(s['max'])}"


def ratio_cell(values: dict[str, float]) -> str:
    if math.isnan(values["median"]):
        return "–"
    return f"**{values['median']:.2f}** ({values['min']:.2f}–{values['max']:.2f})"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def ratio_table(by_mode: dict[str, Any], key: str) -> list[str]:
    """D/A, D/B, D/C, D0/D; *by_mode* maps mode to runs, or to threads -> runs."""
    pairs = (("D", "A"), ("D", "B"), ("D", "C"), ("D0", "D"))
    nested = isinstance(next(iter(by_mode.values())), dict)
    groups = sorted({t for runs in by_mode.values() for t in runs}, key=int) if nested else [""]
    rows = []
    for group in groups:

        def series(mode: str, group: str = group) -> list[float]:
            runs = by_mode.get(mode, {}).get(group, []) if nested else by_mode.get(mode, [])
            return [run[key] for run in runs]

        cells = [ratio_cell(ratios(series(a), series(b))) for a, b in pairs]
        rows.append([group or "all", *cells])
    return table(["threads" if nested else "", *[f"{a}/{b}" for a, b in pairs]], rows)
