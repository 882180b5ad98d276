"""``results.png``: the main comparison, bars at the median with min-max whiskers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
from matplotlib.axes import Axes  # noqa: E402

from bench.plan import EQUAL, EQUAL_THREADS, MEMORY_CONNECTIONS, MODES  # noqa: E402
from bench.stats import spread  # noqa: E402

COLORS = {"A": "#9e9e9e", "B": "#4c72b0", "C": "#dd8452", "D": "#55a868", "D0": "#8fd19e", EQUAL: "#1b5e20"}
ORDER = (*MODES, EQUAL)


def _bars(ax: Axes, groups: list[str], series: dict[str, list[list[float]]], title: str, ylabel: str) -> None:
    """One bar per mode within each group; *series* maps mode -> per-group repeat values."""
    modes = [m for m in ORDER if m in series]
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        stats = [spread(values) for values in series[mode]]
        xs = [g + (i - (len(modes) - 1) / 2) * width for g in range(len(groups))]
        medians = [s["median"] for s in stats]
        errors = [[s["median"] - s["min"] for s in stats], [s["max"] - s["median"] for s in stats]]
        ax.bar(xs, medians, width, yerr=errors, capsize=2, label=mode, color=COLORS[mode], edgecolor="black", lw=0.4)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _micro(results: dict[str, Any], key: str, threads: list[str]) -> dict[str, list[list[float]]]:
    by_mode = results.get("micro", {}).get(key, {})
    return {m: [[r["cycles_per_s"] for r in runs.get(t, [])] for t in threads] for m, runs in by_mode.items()}


CATEGORY_COLORS = {
    "connect": "#7f0000",
    "reset": "#ffd92f",
    "health": "#a6cee3",
    "setup": "#fb9a99",
    "query": "#d9d9d9",
    "txn_end": "#6a3d9a",
    "other": "#b15928",
}


def _roundtrips(ax: Axes, counted: dict[str, Any]) -> None:
    """Stacked round trips per request cycle, by category."""
    modes = [m for m in MODES if m in counted]
    bottoms = [0.0] * len(modes)
    for category, color in CATEGORY_COLORS.items():
        heights = []
        for mode in modes:
            data = counted[mode]
            value = data["categories"].get(category, 0) + (data["connections"] if category == "connect" else 0)
            heights.append(value / data["cycles"])
        if any(heights):
            ax.bar(modes, heights, 0.6, bottom=bottoms, label=category, color=color, edgecolor="black", lw=0.4)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    ax.set_title("round trips per request cycle (counted)", fontsize=10)
    ax.set_ylabel("round trips")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)


def _equal(results: dict[str, Any]) -> tuple[list[str], dict[str, list[list[float]]], str, str] | None:
    """B, D (max 8) and the equal-count D16 at EQUAL_THREADS threads, per added latency."""
    micro = results.get("micro", {})
    keys = sorted((k for k, by_mode in micro.items() if EQUAL in by_mode), key=float)
    if not keys:
        return None
    t = str(EQUAL_THREADS)
    series = {m: [[r["cycles_per_s"] for r in micro[k].get(m, {}).get(t, [])] for k in keys] for m in ("B", "D", EQUAL)}
    groups = ["loopback" if k == "0" else f"+{k} ms" for k in keys]
    title = f"micro, {t} threads: B ({t} conns), D (max 8), {EQUAL} (max {t}: equal)"
    return groups, series, title, "cycles/s"


def _instructions(ax: Axes, results: dict[str, Any]) -> None:
    """Instructions per request cycle (callgrind), one bar per mode, labelled with its ratio to B."""
    counted = results["instructions"]["modes"]
    modes = [m for m in MODES if m in counted]
    values = [counted[m]["instructions_per_cycle"] / 1e6 for m in modes]
    bars = ax.bar(modes, values, 0.6, color=[COLORS[m] for m in modes], edgecolor="black", lw=0.4)
    base = counted.get("B", {}).get("instructions_per_cycle")
    if base:
        labels = [f"{v * 1e6 / base:.2f} x B" for v in values]
        ax.bar_label(bars, labels, fontsize=8, padding=2)
        ax.axhline(base / 1e6, color=COLORS["B"], lw=0.8, ls="--")
    ax.set_title("client instructions per request cycle (callgrind, counted)", fontsize=10)
    ax.set_ylabel("million instructions")
    ax.set_ylim(0, max(values) * 1.18)
    ax.grid(axis="y", alpha=0.3)


def _memory(ax: Axes, results: dict[str, Any]) -> None:
    """RSS of a process holding MEMORY_CONNECTIONS connections: baseline and what the connections add."""
    rss = results["memory"]["rss"]
    modes = [m for m in MODES if m in rss]
    base = [spread([r["baseline_kib"] / 1024 for r in rss[m]])["median"] for m in modes]
    held = [spread([r["rss_kib"] / 1024 for r in rss[m]])["median"] for m in modes]
    label = "baseline (modules loaded, no connection)"
    ax.bar(modes, base, 0.6, color="#d9d9d9", edgecolor="black", lw=0.4, label=label)
    added = [h - b for h, b in zip(held, base, strict=True)]
    bars = ax.bar(modes, added, 0.6, bottom=base, color=[COLORS[m] for m in modes], edgecolor="black", lw=0.4)
    ax.bar_label(bars, [f"{h:.1f} MiB" for h in held], fontsize=8, padding=2)
    ax.set_title(f"RSS holding {MEMORY_CONNECTIONS} connections ({MEMORY_CONNECTIONS} threads)", fontsize=10)
    ax.set_ylabel("MiB")
    ax.set_ylim(0, max(held) * 1.15)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)


def _roundtrips_panel(ax: Axes, results: dict[str, Any]) -> None:
    _roundtrips(ax, results["roundtrips"])


#: Panels drawn after the bar groups, when their workload ran.
EXTRA_PANELS = (("instructions", _instructions), ("roundtrips", _roundtrips_panel), ("memory", _memory))


def render(results: dict[str, Any], path: Path) -> None:
    micro_direct = results.get("micro", {}).get("0", {})
    panels = []
    if micro_direct:
        threads = sorted({t for runs in micro_direct.values() for t in runs}, key=int)
        panels.append(
            (
                [f"{t} thr" for t in threads],
                _micro(results, "0", threads),
                "micro: request cycles/s (pools max 8)",
                "cycles/s",
            )
        )
    http = results.get("http", {})
    if http:
        keys = sorted(http, key=float)
        series = {m: [[r["requests_per_s"] for r in http[k].get(m, [])] for k in keys] for m in http[keys[0]]}
        panels.append(([f"+{k} ms" for k in keys], series, "http: req/s (gunicorn 2x8, wrk -c16)", "requests/s"))
    rtt_keys = sorted((k for k in results.get("micro", {}) if k != "0"), key=float)
    if rtt_keys:
        thr = max((t for k in rtt_keys for runs in results["micro"][k].values() for t in runs), key=int)
        series = {
            m: [[r["cycles_per_s"] for r in results["micro"][k][m].get(thr, [])] for k in rtt_keys] for m in MODES
        }
        series = {m: v for m, v in series.items() if any(v)}
        panels.append(([f"+{k} ms" for k in rtt_keys], series, f"micro with added latency, {thr} thr", "cycles/s"))
    equal = _equal(results)
    if equal:
        panels.append(equal)
    extras = [draw for key, draw in EXTRA_PANELS if results.get(key)]
    if not panels and not extras:
        return
    count = len(panels) + len(extras)
    columns = min(2, count)
    rows = (count + columns - 1) // columns
    fig, grid = plt.subplots(rows, columns, figsize=(6.4 * columns, 4.4 * rows), squeeze=False)
    axes = list(grid.flat)
    for ax, (groups, series, title, ylabel) in zip(axes, panels, strict=False):
        _bars(ax, groups, series, title, ylabel)
        if EQUAL in series:
            ax.legend(title="mode", fontsize=8)
    for ax, draw in zip(axes[len(panels) :], extras, strict=False):
        draw(ax, results)
    for ax in axes[count:]:
        ax.set_visible(False)
    if panels:
        axes[0].legend(title="mode", fontsize=8)
    meta = results["meta"]
    fig.suptitle(
        f"django_mysql_pooled benchmarks ({meta['plan']['name']} plan, {meta['machine']['date']})\n"
        "A stock CONN_MAX_AGE=0 · B stock persistent + health checks · C django-db-connection-pool · "
        f"D django_mysql_pooled · D0 same, reset=False · {EQUAL} D with max_size {EQUAL_THREADS}",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))  # room for the two-line title
    fig.savefig(path, dpi=110)
    plt.close(fig)
