"""The targets the results are compared against (reported, never tuned for).

A target is met when the median of its per-repeat figures meets it.
"""

from __future__ import annotations

import math
from typing import Any

from bench.plan import EQUAL, EQUAL_THREADS
from bench.stats import ratios, spread


def _throughputs(results: dict[str, Any], workload: str, mode: str, threads: str | None, key: str) -> list[float]:
    runs = results.get(workload, {}).get(key, {}).get(mode)
    if runs is None:
        return []
    if threads is not None:
        runs = runs.get(threads, [])
    key = "cycles_per_s" if workload == "micro" else "requests_per_s"
    return [run[key] for run in runs]


def _ratio_target(
    results: dict[str, Any],
    workload: str,
    num: str,
    den: str,
    least: float,
    threads: str | None,
    *,
    equal: bool = False,
    key: str = "0",
) -> dict[str, Any]:
    where = workload + ("" if key == "0" else f" +{key} ms") + (f", {threads} thr" if threads else "")
    if equal:
        where += ", equal connection counts"
    value = ratios(
        _throughputs(results, workload, num, threads, key), _throughputs(results, workload, den, threads, key)
    )
    return {
        "target": f"{where}: {num} >= {least:g} x {den}",
        "value": value,
        "unit": "x",
        "met": _met(value, least, True),
    }


def _latency_target(results: dict[str, Any], key: str, num: str, den: str, most: float) -> dict[str, Any]:
    """p50 latency at one thread through the proxy adding *key* ms each way: *num* <= *most* x *den*."""
    by_mode = results.get("micro", {}).get(key, {})
    series = [[run["latency_ms"]["p50"] for run in by_mode.get(mode, {}).get("1", [])] for mode in (num, den)]
    value = ratios(*series)
    return {
        "target": f"micro +{key} ms, 1 thr: p50 latency {num} <= {most:g} x {den}",
        "value": value,
        "unit": "x",
        "met": _met(value, most, False),
    }


def _instruction_target(results: dict[str, Any], num: str, den: str, most: float) -> dict[str, Any]:
    counted = results.get("instructions", {}).get("modes", {})
    pair = [counted[m]["instructions_per_cycle"] for m in (num, den) if m in counted]
    value = spread([pair[0] / pair[1]] if len(pair) == 2 else [])
    target = f"instructions per cycle: {num} <= {most:.2f} x {den}"
    return {"target": target, "value": value, "unit": "x", "met": _met(value, most, False)}


def _memory_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    memory = results.get("memory", {})
    rss = memory.get("rss", {})
    value = ratios([r["rss_kib"] for r in rss.get("D", [])], [r["rss_kib"] for r in rss.get("B", [])])
    out = [{"target": "RSS holding 50 connections: D <= 1.05 x B", "value": value, "unit": "x"}]
    out[0]["met"] = _met(value, 1.05, False)
    # Flat: a leak of one small object per cycle is >= 28 kB per 1k cycles; 1 KiB per 1k leaves room
    # for timers' one-off allocations falling into the second half.
    core = memory.get("core")
    value = spread([core["second_half_per_1k"]] if core else [])
    label = "tracemalloc, pool core: growth <= 1024 B per 1k checkouts (flat)"
    out.append({"target": label, "value": value, "unit": "B", "met": _met(value, 1024.0, False)})
    django = memory.get("django", {}).get("D")
    value = spread([django["ours_second_half_per_1k"]] if django else [])
    label = "tracemalloc, D's Django cycles: growth under our frames <= 1024 B per 1k cycles (flat)"
    out.append({"target": label, "value": value, "unit": "B", "met": _met(value, 1024.0, False)})
    return out


def _met(value: dict[str, float], bound: float, at_least: bool) -> bool | None:
    median = value["median"]
    if math.isnan(median):
        return None
    return median >= bound if at_least else median <= bound


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target with its figure (min/median/max) and whether it is met (``None``: not run)."""
    out = [_instruction_target(results, "D", "B", 1.0)]
    out.append(_ratio_target(results, "micro", "D", "B", 1.0, "1"))
    out.append(_ratio_target(results, "micro", EQUAL, "B", 1.0, str(EQUAL_THREADS), equal=True))
    for threads in ("1", "16"):
        out.append(_ratio_target(results, "micro", "D", "C", 1.5, threads))
    out.append(_ratio_target(results, "http", "D", "B", 1.0, None, equal=True))
    out.append(_ratio_target(results, "http", "D", "C", 1.5, None))
    out.append(_ratio_target(results, "http", "D", "A", 2.0, None))
    out.append(_latency_target(results, "0.5", "D", "B", 0.8))
    out.append(_ratio_target(results, "micro", EQUAL, "B", 1.0, str(EQUAL_THREADS), equal=True, key="0.5"))
    out.append(_ratio_target(results, "http", "D", "B", 1.0, None, equal=True, key="0.5"))
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
    single = ratios(core.get("ConnectionPool", {}).get("1:16", []), core.get("QueuePool", {}).get("1:16", []))
    label = "pool core, 1 thread: not slower than QueuePool"
    out.append({"target": label, "value": single, "unit": "x", "met": _met(single, 1.0, False)})
    out += _memory_targets(results)
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
