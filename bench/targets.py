"""The targets the results are compared against (reported, never tuned for).

A target is met when the median of its per-repeat figures meets it.
"""

from __future__ import annotations

import math
from typing import Any

from bench.stats import ratios, spread


def _throughputs(results: dict[str, Any], workload: str, mode: str, threads: str | None) -> list[float]:
    runs = results.get(workload, {}).get("0", {}).get(mode)
    if runs is None:
        return []
    if threads is not None:
        runs = runs.get(threads, [])
    key = "cycles_per_s" if workload == "micro" else "requests_per_s"
    return [run[key] for run in runs]


def _ratio_target(
    results: dict[str, Any], workload: str, num: str, den: str, least: float, threads: str | None
) -> dict[str, Any]:
    where = f"{workload}" + (f", {threads} thr" if threads else "")
    value = ratios(_throughputs(results, workload, num, threads), _throughputs(results, workload, den, threads))
    return {
        "target": f"{where}: {num} >= {least:g} x {den}",
        "value": value,
        "unit": "x",
        "met": _met(value, least, True),
    }


def _met(value: dict[str, float], bound: float, at_least: bool) -> bool | None:
    median = value["median"]
    if math.isnan(median):
        return None
    return median >= bound if at_least else median <= bound


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its figure (min/median/max) and whether it is met (``None``: not run)."""
    out = []
    for threads in ("1", "16"):
        out.append(_ratio_target(results, "micro", "D", "B", 0.95, threads))
        out.append(_ratio_target(results, "micro", "D", "C", 1.5, threads))
    out.append(_ratio_target(results, "http", "D", "B", 0.95, None))
    out.append(_ratio_target(results, "http", "D", "C", 1.3, None))
    out.append(_ratio_target(results, "http", "D", "A", 2.0, None))
    core = results.get("poolcore", {})
    ours, theirs = core.get("ConnectionPool", {}).get("16:16", []), core.get("QueuePool", {}).get("16:16", [])
    per_pair = spread(ours)
    out.append(
        {
            "target": "pool core, 16 threads: <= 10 us per pair",
            "value": per_pair,
            "unit": "us",
            "met": _met(per_pair, 10.0, False),
        }
    )
    versus = ratios(ours, theirs)
    out.append(
        {
            "target": "pool core, 16 threads: not slower than QueuePool",
            "value": versus,
            "unit": "x",
            "met": _met(versus, 1.0, False),
        }
    )
    for mode in ("D", "C"):
        runs = results.get("fairness", {}).get(mode, [])
        value = spread([run["wait_ms"]["max"] / run["wait_ms"]["mean"] for run in runs if run["wait_ms"]["mean"] > 0])
        label = f"fairness ({mode}): max wait <= 2 x mean wait"
        out.append({"target": label, "value": value, "unit": "x", "met": _met(value, 2.0, False)})
    return out


def summary(targets: list[dict[str, Any]]) -> str:
    met = sum(1 for t in targets if t["met"] is True)
    missed = sum(1 for t in targets if t["met"] is False)
    return f"{met} met, {missed} missed, {len(targets) - met - missed} not run"
