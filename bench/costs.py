"""Workloads that count instead of timing: instructions, opcodes and memory, as run from the coordinator.

Each measurement runs in a fresh process of its own (:mod:`bench.instructions`
under callgrind, :mod:`bench.opcodes`, :mod:`bench.memory`), configured for
its mode as the workers are (:func:`bench.workerctl.mode_env`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import annotate, components, instructions
from bench.plan import MEMORY_CONNECTIONS, rotated
from bench.workerctl import mode_env
from bench.workloads import Context

#: The modes whose difference is annotated: the pooled backend against persistent connections.
ANNOTATED = ("D", "B")
#: Differences kept in results.json, each way.
TOP = 25


def _env(ctx: Context, mode: str, tag: str, max_size: int | None = None) -> dict[str, str]:
    connects = ctx.run_dir / f"connects-{tag}-{mode}"
    connects.unlink(missing_ok=True)
    size = max_size or ctx.plan.max_size
    return mode_env(mode, ctx.server, port=ctx.server.port, max_size=size, min_size=0, connects=connects)


def _json(ctx: Context, env: dict[str, str], module: str, *args: object) -> Any:
    command = [sys.executable, "-m", module, *map(str, args)]
    done = subprocess.run(command, cwd=ctx.root, env=env, capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def instruction_counts(ctx: Context) -> dict[str, Any]:
    """Instructions per cycle of each mode, then where D's differ from B's (C functions, Python functions)."""
    plan = ctx.plan
    out_dir = ctx.run_dir / "callgrind"
    counted = instructions.measure(plan.instruction_modes, *plan.instruction_cycles, _env(ctx, "D", "cg"), out_dir)
    kept = {mode: {k: v for k, v in r.items() if k != "files"} for mode, r in counted.items()}
    result: dict[str, Any] = {"modes": kept}
    if all(mode in counted for mode in ANNOTATED):
        result["components"] = components.measure(plan.component_uses, _env(ctx, "D", "parts"), out_dir)
        result["c_functions"] = _c_functions(ctx, counted)
        result.update(_python_functions(ctx))
    return result


def _c_functions(ctx: Context, counted: dict[str, Any]) -> list[list[Any]]:
    per: dict[str, dict[str, float]] = {}
    for mode in ANNOTATED:
        files, cycles = counted[mode]["files"], counted[mode]["cycles"]
        keep = ctx.run_dir / f"callgrind-annotate-{mode}.txt"
        small = annotate.functions(Path(files["small"]))
        large = annotate.functions(Path(files["large"]), keep)
        per[mode] = annotate.per_cycle(small, large, cycles["large"] - cycles["small"])
        ctx.log(f"  callgrind_annotate of mode {mode}'s large window: {keep}")
    return annotate.differences(per[ANNOTATED[0]], per[ANNOTATED[1]], TOP)


def _python_functions(ctx: Context) -> dict[str, Any]:
    warmup, cycles = ctx.plan.instruction_cycles[0], ctx.plan.opcode_cycles
    per: dict[str, dict[str, float]] = {}
    totals: dict[str, float] = {}
    for mode in ANNOTATED:
        env = {**_env(ctx, mode, "opcodes"), "PYTHONHASHSEED": "0"}
        counted = _json(ctx, env, "bench.opcodes", mode, warmup, cycles)
        per[mode] = annotate.python_per_cycle(counted)
        totals[mode] = counted["opcodes"] / counted["cycles"]
        path = ctx.run_dir / f"opcodes-{mode}.json"
        path.write_text(json.dumps(counted, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    mine, theirs = ANNOTATED
    packages = annotate.differences(annotate.by_package(per[mine]), annotate.by_package(per[theirs]), TOP)
    return {
        "opcodes_per_cycle": totals,
        "opcode_cycles": cycles,
        "py_functions": annotate.differences(per[mine], per[theirs], TOP),
        "py_packages": packages,
    }


def memory(ctx: Context) -> dict[str, Any]:
    """RSS holding :data:`~bench.plan.MEMORY_CONNECTIONS` connections; traced growth over many cycles."""
    plan = ctx.plan
    rss: dict[str, list[Any]] = {mode: [] for mode in ("B", "C", "D")}
    for repeat in range(plan.repeats):
        for mode in rotated(tuple(rss), repeat):
            env = _env(ctx, mode, "rss", max_size=MEMORY_CONNECTIONS)
            rss[mode].append(_json(ctx, env, "bench.memory", "rss", mode, MEMORY_CONNECTIONS))
    ctx.log("  memory: rss done")
    core = _json(ctx, _env(ctx, "D", "core"), "bench.memory", "core", plan.memory_core_pairs)
    cycles = {
        mode: _json(ctx, _env(ctx, mode, "traced"), "bench.memory", "django", mode, plan.memory_cycles)
        for mode in ("B", "D")
    }
    return {"rss": rss, "core": core, "django": cycles}
