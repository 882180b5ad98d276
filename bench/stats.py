"""Summaries: percentiles, min/median/max of repeats, per-repeat ratios."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100, nearest rank) of *values*; NaN when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> dict[str, float]:
    """``min``, ``median`` and ``max`` of the repeats of one figure."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"min": math.nan, "median": math.nan, "max": math.nan}
    return {"min": min(clean), "median": statistics.median(clean), "max": max(clean)}


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> dict[str, float]:
    """Spread of the per-repeat ratios (repeat *r* of one mode over repeat *r* of another).

    Modes run interleaved within a repeat, so pairing repeats cancels slow
    drifts of the machine (other processes, thermal) better than a ratio of medians.
    """
    pairs = [n / d for n, d in zip(numerators, denominators, strict=False) if d and not math.isnan(n / d)]
    return spread(pairs)


def latency_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50, p99, mean and max of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {"p50": math.nan, "p99": math.nan, "mean": math.nan, "max": math.nan}
    return {
        "p50": percentile(seconds, 50) * 1000,
        "p99": percentile(seconds, 99) * 1000,
        "mean": statistics.fmean(seconds) * 1000,
        "max": max(seconds) * 1000,
    }
