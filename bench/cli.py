"""``python -m bench``: run the workloads, write RESULTS.md, results.json and results.png.

Plans: ``--quick`` (seconds; a smoke test for CI, written under
``bench/.run/quick/`` unless ``--out`` is given), ``--medium``, or the full
run (the default, written to ``bench/``). ``--only`` picks workloads.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench import chart, costs, db, facts, report, targets, workloads
from bench.modes import Server
from bench.plan import PEAK_CONNECTIONS, PLANS, Plan
from bench.workloads import Context

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORKLOADS = (
    "instructions",
    "memory",
    "poolcore",
    "roundtrips",
    "micro",
    "phases",
    "fairness",
    "http",
    "rtt",
    "spike",
    "tls",
)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_const", const="quick", dest="plan", help="smoke test, seconds")
    group.add_argument("--medium", action="store_const", const="medium", dest="plan", help="a few minutes")
    group.add_argument("--full", action="store_const", const="full", dest="plan", help="the default")
    parser.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}")
    parser.add_argument("--out", type=Path, help="where RESULTS.md, results.json, results.png go")
    parser.add_argument("--profile", action="store_true", help="also write pyinstrument profiles of B, C, D")
    args = parser.parse_args(argv)
    args.plan = args.plan or "full"
    unknown = set(args.only.split(",")) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}")
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(ctx: Context, only: set[str], profile: bool) -> tuple[dict[str, Any], dict[str, float]]:
    plan, results, seconds = ctx.plan, {}, {}

    def step(name: str, func: Any) -> Any:
        value, seconds[name] = workloads.timed(ctx, name, func)
        return value

    if "instructions" in only:
        results["instructions"] = step("instructions", lambda: costs.instruction_counts(ctx))
    if "memory" in only:
        results["memory"] = step("memory", lambda: costs.memory(ctx))
    if "poolcore" in only:
        results["poolcore"] = step("poolcore", lambda: workloads.poolcore(ctx))
    if "roundtrips" in only:
        results["roundtrips"] = step("roundtrips", lambda: workloads.roundtrips(ctx))
    if only & {"micro", "phases", "fairness"} or profile:
        modes = workloads.with_equal(ctx.modes, plan.micro_threads if "micro" in only else ())
        with workloads.workers(ctx, modes, tag="direct", port=ctx.server.port, max_size=plan.max_size) as pool:
            if "micro" in only:
                micro = step("micro", lambda: workloads.micro(ctx, pool, plan.micro_threads, plan.repeats))
                results["micro"] = {"0": micro}
            if "phases" in only:
                results["phases"] = step("phases", lambda: workloads.phases(ctx, pool))
            if "fairness" in only:
                results["fairness"] = step("fairness", lambda: workloads.fairness(ctx, pool))
            if profile:
                results["profiles"] = step("profile", lambda: workloads.profile(ctx, pool, ("B", "C", "D")))
    if "http" in only:
        results["http"] = {"0": step("http", lambda: workloads.http(ctx, ctx.server.port, plan.repeats))}
    if "rtt" in only:
        step("rtt", lambda: rtt(ctx, plan, results))
    if "spike" in only:
        results["spike"] = step("spike", lambda: workloads.spike(ctx))
    if "tls" in only:
        results["tls"] = step("tls", lambda: workloads.tls(ctx))
    return results, seconds


def rtt(ctx: Context, plan: Plan, results: dict[str, Any]) -> None:
    results["rtt_calibration"] = workloads.calibrate(ctx, plan.rtt_delays_ms)
    for delay in plan.rtt_delays_ms:
        key = f"{delay:g}"
        with workloads.proxy(ctx, delay_ms=delay) as slow:
            tag, port = f"rtt{key}", slow.port
            modes = workloads.with_equal(ctx.modes, plan.rtt_threads)
            with workloads.workers(ctx, modes, tag=tag, port=port, max_size=plan.max_size) as pool:
                micro = workloads.micro(ctx, pool, plan.rtt_threads, plan.rtt_repeats)
                results.setdefault("micro", {})[key] = micro
            if plan.rtt_http:
                results.setdefault("http", {})[key] = workloads.http(ctx, port, plan.rtt_repeats)
        ctx.log(f"  rtt +{key} ms done")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    plan = PLANS[args.plan]
    out = args.out or (BENCH / ".run" / "quick" if plan.name == "quick" else BENCH)
    run_dir = BENCH / ".run"
    for folder in (out, run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    server = Server.from_env()
    started = time.perf_counter()
    db.prepare(server)
    status = db.connect(server)
    meta: dict[str, Any] = {
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "plan": plan.__dict__,
        "machine": facts.machine(),
        "server": db.server_facts(status),
        "load_before": facts.load_average(),
    }
    log(f"{plan.name} plan; results go to {out}")
    server_facts = meta["server"]
    headroom = server_facts["max_connections"] - server_facts["threads_connected"]
    if headroom < max(PEAK_CONNECTIONS, plan.spike_max_size + plan.spike_min_size):
        log(f"warning: the server has room for {headroom} more connections; this run needs up to {PEAK_CONNECTIONS}")
    ctx = Context(plan=plan, server=server, root=ROOT, run_dir=run_dir, status=status, log=log)
    try:
        results, seconds = run(ctx, set(args.only.split(",")), args.profile)
    finally:
        status.close()
    meta.update(load_after=facts.load_average(), seconds=time.perf_counter() - started, workload_seconds=seconds)
    results["meta"] = meta
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "RESULTS.md").write_text(report.render(results), encoding="utf-8")
    chart.render(results, out / "results.png")
    log(f"done in {meta['seconds']:.1f} s: {targets.summary(targets.evaluate(results))}; see {out / 'RESULTS.md'}")
    return 0
