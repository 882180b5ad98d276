"""The results page's counted sections: instructions, where D's extra go, memory, equal connection counts."""

from __future__ import annotations

import math
from typing import Any

from bench.fmt import mmm, num, ratio_cell, table
from bench.plan import EQUAL, EQUAL_THREADS, MEMORY_CONNECTIONS
from bench.stats import ratios

#: Rows shown of each difference table.
SHOWN = 15
#: Ratios of instructions per cycle shown under the table.
PAIRS = (("D", "B"), ("D0", "B"), ("D", "C"), ("D", "A"))


def instructions_section(results: dict[str, Any]) -> list[str]:
    counted = results.get("instructions")
    if not counted:
        return []
    modes = counted["modes"]
    some = next(iter(modes.values()))["cycles"]
    out = ["## 0. Instructions per request cycle (callgrind; the noise-free figure)", ""]
    out += [
        "The micro cycle of section 1 on one thread, counted by `valgrind --tool=callgrind` in the thread that",
        f"runs it: after start-up and {some['warmup']} warm-up cycles, a window of {some['small']} cycles, then one",
        f"of {some['large']}; instructions per cycle = (large window - small window)"
        f" / {some['large'] - some['small']}.",
        "The difference cancels whatever is fixed per window; the count does not depend on the machine's load",
        "(repeatable to about 1 %). *background*: the pool's timer threads over the whole run, not counted",
        "(their work is per second, and a second under callgrind holds ~50 times fewer cycles).",
        "",
    ]
    base = modes.get("B", {}).get("instructions_per_cycle", math.nan)
    rows = [
        [
            mode,
            f"**{data['instructions_per_cycle'] / 1e6:.3f} M**",
            f"{data['instructions_per_cycle'] / base:.3f}",
            f"{data['startup'] / 1e6:.0f} M",
            f"{data['background'] / 1e6:.1f} M",
        ]
        for mode, data in modes.items()
    ]
    out += table(["mode", "instructions per cycle", "/ B", "start-up + warm-up", "background"], rows) + [""]
    cells = []
    for a, b in PAIRS:
        if a in modes and b in modes:
            value = modes[a]["instructions_per_cycle"] / modes[b]["instructions_per_cycle"]
            cells.append(f"{a}/{b} = **{value:.3f}**")
    out += ["Ratios: " + ", ".join(cells) + ".", ""]
    return out + where_section(counted)


def where_section(counted: dict[str, Any]) -> list[str]:
    if "c_functions" not in counted:
        return []
    modes = counted["modes"]
    extra = modes["D"]["instructions_per_cycle"] - modes["B"]["instructions_per_cycle"]
    opcodes = counted["opcodes_per_cycle"]
    out = ["### Where D's extra instructions go", ""]
    out += [
        f"D runs **{extra:,.0f}** more instructions per cycle than B. Both tables below are computed by this",
        "run from its own data (`bench/annotate.py`); the full `callgrind_annotate` outputs of the large",
        "windows are in `bench/.run/callgrind-annotate-D.txt` and `-B.txt`, the opcode counts in",
        "`bench/.run/opcodes-D.json` and `-B.json` (not kept in git).",
        "",
        f"**Python, opcodes per cycle** (`sys.settrace` with `f_trace_opcodes` over {counted['opcode_cycles']}",
        "cycles after the warm-up, the cycle's thread; each function's own bytecodes, not its callees'):",
        f"B {opcodes['B']:,.0f}, D {opcodes['D']:,.0f}, D - B **{opcodes['D'] - opcodes['B']:+,.0f}**",
        f"({(opcodes['D'] / opcodes['B'] - 1) * 100:+.1f} %; instructions: "
        f"{(modes['D']['instructions_per_cycle'] / modes['B']['instructions_per_cycle'] - 1) * 100:+.1f} %).",
        "",
    ]
    out += parts_section(counted, extra, modes["B"]["instructions_per_cycle"])
    out += [
        "By package:",
        "",
    ]
    out += table(["package", "D - B", "D", "B"], _rows(counted["py_packages"])) + ["", "By function:", ""]
    out += table(["function (file:line name)", "D - B", "D", "B"], _rows(counted["py_functions"])) + [""]
    out += [
        "**C, instructions per cycle by function** (callgrind self cost, differenced between the windows like",
        "the totals). The interpreter's own functions carry the Python-level difference above:",
        "",
    ]
    out += table(["C function", "D - B", "D", "B"], _rows(counted["c_functions"])) + [""]
    saved = [row for row in counted["py_functions"] if row[3] < 0][:5]
    if saved:
        out += ["Where D runs fewer opcodes than B: " + ", ".join(f"`{r[0]}` ({r[3]:+,.0f})" for r in saved) + ".", ""]
    return out


#: What each part of D's checkout is, for the parts table (bench/components.py).
PART_NAMES = {
    "reset": "reset and restore at checkin (`COM_RESET_CONNECTION` + the restore batch: 2 round trips)",
    "pool": "pool: `getconn()` + `putconn()`, without the reset",
    "django": "Django's `connect()` + `close()` per checkout, with the backend's overrides, without the pool",
    "health_check": "B instead: its per-request health check (`is_usable()`: a ping)",
}


def parts_section(counted: dict[str, Any], extra: float, b_cycle: float) -> list[str]:
    """D's extra instructions by part of the checkout, each counted on its own (:mod:`bench.components`)."""
    parts = counted.get("components", {}).get("parts")
    if not parts:
        return []
    out = [
        f"**By part** (`bench/components.py`: each part repeated {counted['components']['uses']} times in a",
        "callgrind window of its own, mode D, an empty loop's window subtracted): what a checkout costs that B's",
        "persistent connection does not.",
        "",
    ]
    rows = []
    for name, label in PART_NAMES.items():
        sign = -1 if name == "health_check" else 1
        rows.append([label, f"**{sign * parts[name]:+,.0f}**", f"{parts[name] / b_cycle * 100:.1f} %"])
    accounted = sum(parts[name] for name in ("reset", "pool", "django")) - parts["health_check"]
    rows.append(["sum (D - B as the parts add up)", f"**{accounted:+,.0f}**", f"{accounted / b_cycle * 100:.1f} %"])
    rows.append(["D - B measured (cycles, above)", f"**{extra:+,.0f}**", f"{extra / b_cycle * 100:.1f} %"])
    out += table(["part", "instructions per use", "of B's whole cycle"], rows) + [""]
    return out


def _rows(rows: list[list[Any]]) -> list[list[str]]:
    shown = [row for row in rows if row[3] > 0][:SHOWN]
    return [[f"`{name}`", f"**{diff:+,.0f}**", f"{mine:,.0f}", f"{theirs:,.0f}"] for name, mine, theirs, diff in shown]


def equal_section(results: dict[str, Any]) -> list[str]:
    """D with max_size 8 and with max_size 16 against B's 16 thread connections, at 16 threads."""
    keys = [key for key, by_mode in results.get("micro", {}).items() if EQUAL in by_mode]
    if not keys:
        return []
    t = str(EQUAL_THREADS)
    out = [f"### Equal connection counts, {t} threads", ""]
    out += [
        f"At {t} threads B holds {t} connections (one per thread). *D (max 8)* is the row above: 8",
        f"connections, so threads wait for one; *{EQUAL}* is D with max_size {t}: as many connections as B.",
        "The issue's comparison is the equal one; the unequal row is kept, labelled.",
        "",
    ]
    rows = []
    for key in sorted(keys, key=float):
        by_mode = results["micro"][key]
        where = "no added latency" if key == "0" else f"+{key} ms each way"

        def series(mode: str, by_mode: dict[str, Any] = by_mode) -> list[float]:
            return [run["cycles_per_s"] for run in by_mode.get(mode, {}).get(t, [])]

        pairs = (
            (f"D (max 8, 8 conns) / B ({t} conns): unequal", "D", "B"),
            (f"{EQUAL} (max {t}, {t} conns) / B ({t} conns): equal", EQUAL, "B"),
            (f"{EQUAL} / D (max 8)", EQUAL, "D"),
        )
        rows += [[where, label, ratio_cell(ratios(series(a), series(b)))] for label, a, b in pairs]
    return out + table(["latency", "cycles/s ratio", "median (range)"], rows) + [""]


def memory_section(results: dict[str, Any]) -> list[str]:
    memory = results.get("memory")
    if not memory:
        return []
    n = MEMORY_CONNECTIONS
    out = ["## 8. Memory", ""]
    out += [
        f"**RSS holding {n} connections.** A fresh process per mode and repeat starts {n} threads; each runs one",
        f"request cycle, all holding their connection at the same moment (a barrier), so {n} server connections",
        "are open; then every thread stays alive while `VmRSS` is read. B keeps each thread's persistent",
        f"connection (how stock Django holds {n} connections: one per thread); C and D hold the {n} returned",
        "connections in their pool (max_size 50). Same threads, same connections, same work: the difference is",
        "the cost of holding connections the mode's way. *baseline*: the same process after one cycle on its main",
        "thread that leaves no connection held, so every module a mode imports at its first connection is",
        "loaded (D's baseline is higher by its own modules and ctypes; C's by SQLAlchemy and the one",
        "connection its pool keeps, so C's per-connection figure is over 49); *opened* includes that cycle's.",
        "",
    ]
    rss = memory["rss"]
    rows = []
    for mode, runs in rss.items():
        rows.append(
            [
                mode,
                mmm([r["baseline_kib"] / 1024 for r in runs]),
                mmm([r["rss_kib"] / 1024 for r in runs]),
                mmm([(r["rss_kib"] - r["baseline_kib"]) / n for r in runs]),
                ratio_cell(ratios([r["rss_kib"] for r in runs], [r["rss_kib"] for r in rss["B"]])),
                str(max(r["opened"] for r in runs)),
            ]
        )
    header = ["mode", "baseline MiB", f"with {n} conns MiB", "KiB per conn (over baseline)", "RSS / B", "opened"]
    out += table(header, rows) + [""]
    out += [
        "**Traced allocations** (`tracemalloc`, 12 frames): snapshots after a warm-up, half-way and at the end;",
        "growth proportional to the work shows in both halves, a one-off only in the first. *ours*: allocations",
        "with a `django_mysql_pooled` frame on their stack, whichever library made them.",
        "",
    ]
    rows = []
    traced = [("pool core, fake connections (checkout + checkin pairs)", memory["core"])]
    traced += [(f"Django request cycles, mode {mode}", data) for mode, data in memory["django"].items()]
    for label, data in traced:
        rows.append(
            [
                label,
                f"{data['units']:,}",
                f"{data['first_half_bytes']:+,}",
                f"{data['second_half_bytes']:+,}",
                f"**{num(data['second_half_per_1k'])}**",
                f"{data['ours_first_half_bytes']:+,} / {data['ours_second_half_bytes']:+,}",
                f"**{num(data['ours_second_half_per_1k'])}**",
            ]
        )
    header = ["workload", "units", "1st half B", "2nd half B", "2nd half B/1k", "ours 1st / 2nd B", "ours B/1k"]
    out += table(header, rows) + ["", "Largest growth by line (whole traced run):", ""]
    for label, data in traced:
        lines = ", ".join(f"`{where}` {size:+,} B ({count:+} objects)" for where, size, count in data["top_growth"][:3])
        out.append(f"* {label}: {lines or 'none'}")
    return out + [""]
