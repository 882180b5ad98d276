"""The results page's sections 3 to 7 (see :mod:`bench.report`)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench.fmt import mmm, num, ratio_cell, table
from bench.mysqlproto import CATEGORIES
from bench.stats import ratios

ROOT = Path(__file__).resolve().parent.parent
#: Categories that cost a round trip each (``quit`` gets no reply).
ROUND_TRIPS = tuple(c for c in CATEGORIES if c != "quit")


def rtt_section(results: dict[str, Any]) -> list[str]:
    calibration = results.get("rtt_calibration")
    if not calibration:
        return []
    out = ["## 3. Added latency (app <-> database)", ""]
    out += [
        "The workloads of sections 1 and 2 again through `bench/proxy.py`, which delays every chunk by the",
        "given time in each direction (their tables are above, under the latency's heading).",
        "Measured median `COM_PING` round trip:",
        "",
    ]
    rows = [["direct", num(calibration["direct"])]]
    rows += [[f"proxy +{key} ms each way", num(value)] for key, value in calibration.items() if key != "direct"]
    return out + table(["path", "ping ms"], rows) + [""]


def _per_cycle(data: dict[str, Any]) -> dict[str, float]:
    cycles = data["cycles"]
    counts = {c: data["categories"].get(c, 0) / cycles for c in CATEGORIES}
    counts["connect"] += data["connections"] / cycles  # the TCP handshake
    counts["total"] = sum(counts[c] for c in ROUND_TRIPS)
    return counts


def roundtrip_section(results: dict[str, Any]) -> list[str]:
    counted = results.get("roundtrips")
    if not counted:
        return []
    out = ["## 4. Round trips per request cycle (counted, not timed)", ""]
    out += [
        "Client packets that start a command, parsed by the proxy, per cycle of section 1 (one checkout),",
        "steady state on one thread. *connect* is the TCP handshake plus each handshake/auth packet;",
        "a `COM_QUERY` carrying several statements is one round trip, under *query* when it holds the query.",
        "*quit* (`COM_QUIT`) gets no reply and is not a round trip.",
        "",
    ]
    rows = []
    for mode, data in counted.items():
        per = _per_cycle(data)
        rows.append([mode, f"**{num(per['total'])}**", *[num(per[c]) for c in CATEGORIES]])
    out += table(["mode", "round trips", *CATEGORIES], rows) + ["", "Statements and commands per cycle:", ""]
    order = {category: index for index, category in enumerate(CATEGORIES)}
    for mode, data in counted.items():
        labels = sorted(data["labels"].items(), key=lambda kv: (order.get(kv[0].split(":")[0], 99), kv[0]))
        out.append(f"* **{mode}**:")
        out += [f"  * {count / data['cycles']:g} x {_code(label)}" for label, count in labels]
    return out + [""]


def _code(label: str) -> str:
    """*label* as inline code, even when it contains backticks."""
    category, _, text = label.partition(": ")
    return f"{category}: `` {text} ``"


def phases_section(results: dict[str, Any]) -> list[str]:
    phases = results.get("phases")
    if not phases:
        return []
    out = ["### Where a cycle's time goes", ""]
    out += [
        "Mean microseconds per phase of the micro cycle on one thread, no added latency (wall clock:",
        "includes waiting for the server). *connect* is `ensure_connection()`: the checkout with its reset",
        "and session setup (D, D0, C), a new connection (A), nothing (B, whose health-check ping runs on",
        "first use and so falls under *query*).",
        "",
    ]
    names = ("request_started", "connect", "query", "request_finished")
    rows = []
    for mode, runs in phases.items():
        totals = [sum(run[n] for n in names) for run in runs]
        rows.append([mode, *[mmm([run[n] for run in runs]) for n in names], mmm(totals)])
    return out + table(["mode", *names, "total"], rows) + [""]


def spike_section(results: dict[str, Any]) -> list[str]:
    spike = results.get("spike")
    if not spike:
        return []
    plan = results["meta"]["plan"]
    out = ["## 5. Spike (HikariCP's test)", ""]
    out += [
        f"Connection setup slowed to {plan['spike_connect_ms']:g} ms by the proxy; {plan['spike_threads']} threads",
        f"start one request at once ({plan['spike_work_ms']:g} ms of work each); pools min_size",
        f"{plan['spike_min_size']} (idle and ready at the start), max_size {plan['spike_max_size']}",
        "(C: `POOL_SIZE` 5, `MAX_OVERFLOW` 45). Wait: time in `ensure_connection()`.",
        "",
    ]
    rows = [
        [
            mode,
            mmm([r["idle_before"] for r in runs]),
            mmm([r["connects"] for r in runs]),
            mmm([r["wait_ms"]["p50"] for r in runs]),
            mmm([r["wait_p90_ms"] for r in runs]),
            mmm([r["wait_ms"]["max"] for r in runs]),
            mmm([r["elapsed_ms"] for r in runs]),
            str(sum(r.get("errors", 0) for r in runs)),
        ]
        for mode, runs in spike.items()
    ]
    header = ["mode", "idle at start", "connections opened", "wait p50 ms", "wait p90 ms", "wait max ms", "all done ms"]
    header.append("errors")
    return out + table(header, rows) + [""]


def poolcore_section(results: dict[str, Any]) -> list[str]:
    core = results.get("poolcore")
    if not core:
        return []
    out = ["## 6. Pool core overhead", ""]
    out += [
        "Checkout + checkin pairs with fake connections, no I/O: `django_mysql_pooled.pool.pool.ConnectionPool`",
        "vs SQLAlchemy `QueuePool`. Microseconds of wall-clock time per pair (all threads together).",
        "Case THREADS:SIZE; with SIZE below THREADS, checkouts wait and are handed connections.",
        "",
    ]
    ours, theirs = core["ConnectionPool"], core["QueuePool"]
    rows = [[case, mmm(ours[case]), mmm(theirs[case]), ratio_cell(ratios(ours[case], theirs[case]))] for case in ours]
    return out + table(["case", "ConnectionPool us", "QueuePool us", "ours/QueuePool"], rows) + [""]


def fairness_section(results: dict[str, Any]) -> list[str]:
    fair = results.get("fairness")
    if not fair:
        return []
    plan = results["meta"]["plan"]
    out = ["## 7. Fairness", ""]
    out += [
        f"{plan['fairness_threads']} threads on max_size {plan['max_size']}, each request holding its connection",
        f"for a lookup and {plan['fairness_work_ms']:g} ms of work; wait = time in `ensure_connection()`.",
        "Requests per thread: the least and most served thread.",
        "",
    ]
    rows = [
        [
            mode,
            mmm([r["wait_ms"]["mean"] for r in runs]),
            mmm([r["wait_ms"]["p50"] for r in runs]),
            mmm([r["wait_ms"]["p99"] for r in runs]),
            mmm([r["wait_ms"]["max"] for r in runs]),
            mmm([r["wait_ms"]["max"] / r["wait_ms"]["mean"] for r in runs if r["wait_ms"]["mean"]]),
            f"{statistics.median(r['per_thread_min'] for r in runs):g}–"
            f"{statistics.median(r['per_thread_max'] for r in runs):g}",
            str(sum(r.get("errors", 0) for r in runs)),
        ]
        for mode, runs in fair.items()
    ]
    header = ["mode", "mean ms", "p50 ms", "p99 ms", "max ms", "max/mean", "requests/thread", "errors"]
    return out + table(header, rows) + [""]


def tls_section(results: dict[str, Any]) -> list[str]:
    data = results.get("tls")
    if not data:
        return []
    out = ["## 8. TLS: a new connection per request against the pool", ""]
    out += [
        "The micro workload (section 1) for A and D against a private MariaDB that requires TLS",
        "(`require_secure_transport`, certificates made by `openssl` for the run, the server's certificate",
        f"verified: `ssl_mode=VERIFY_IDENTITY`; cipher `{data['cipher']}`). A pays the TCP handshake, the",
        "TLS handshake and the login on every request; D pays them once per pooled connection.",
        "",
    ]
    rows = []
    by_mode = data["micro"]
    for count in sorted({t for runs in by_mode.values() for t in runs}, key=int):
        for mode, runs_by_threads in by_mode.items():
            runs = runs_by_threads.get(count, [])
            rows.append(
                [
                    count,
                    mode,
                    mmm([r["cycles_per_s"] for r in runs]),
                    mmm([r["latency_ms"]["p50"] for r in runs]),
                    mmm([r["cpu_us_per_cycle"] for r in runs]),
                    mmm([r["connects"] for r in runs]),
                    str(sum(r["errors"] for r in runs)),
                ]
            )
        cycles = {mode: [r["cycles_per_s"] for r in by_mode[mode].get(count, [])] for mode in ("A", "D")}
        rows.append([count, "D/A", ratio_cell(ratios(cycles["D"], cycles["A"])), "", "", "", ""])
    header = ["threads", "mode", "cycles/s", "p50 ms", "CPU us", "connections opened", "errors"]
    return out + table(header, rows) + [""]


def footer(results: dict[str, Any]) -> list[str]:
    seconds = results["meta"]["workload_seconds"]
    spent = ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
    out = ["## Run", "", f"Wall time per workload: {spent}.", ""]
    profiles = results.get("profiles")
    if profiles:
        paths = ", ".join(f"`{os.path.relpath(ROOT / p, ROOT)}`" for p in profiles.values())
        out += [f"pyinstrument profiles (one-thread micro workload, not kept in git): {paths}", ""]
    return out
