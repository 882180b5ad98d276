"""Each workload, run from the coordinator; every result is a JSON-ready dict.

Modes are interleaved within a repeat (and their order rotated between
repeats), so that every repeat of every mode sees the same machine.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import db
from bench.httpload import Gunicorn, wrk
from bench.modes import Server
from bench.plan import EQUAL, EQUAL_THREADS, MODES, POOLED, TLS_MODES, Plan, rotated
from bench.proxyctl import ProxyProcess
from bench.site import counter
from bench.workerctl import Worker, close_all, mode_env, start_workers


@dataclasses.dataclass
class Context:
    plan: Plan
    server: Server
    root: Path
    run_dir: Path
    status: Any  # a connection of our own, for SHOW GLOBAL STATUS
    log: Callable[[str], None]
    modes: tuple[str, ...] = MODES


@contextmanager
def proxy(ctx: Context, *, delay_ms: float = 0.0, connect_delay_ms: float = 0.0) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(ctx.server, ctx.root, delay_ms=delay_ms, connect_delay_ms=connect_delay_ms)
    try:
        yield proc
    finally:
        proc.close()


@contextmanager
def workers(ctx: Context, modes: tuple[str, ...], *, tag: str, port: int, **sizes: int) -> Iterator[dict[str, Worker]]:
    started = start_workers(modes, ctx.server, ctx.root, ctx.run_dir, tag=tag, port=port, **sizes)
    try:
        yield started
    finally:
        close_all(started)


def with_equal(modes: tuple[str, ...], threads: tuple[int, ...]) -> tuple[str, ...]:
    """*modes*, plus :data:`~bench.plan.EQUAL` when *threads* include :data:`~bench.plan.EQUAL_THREADS`."""
    return (*modes, EQUAL) if EQUAL_THREADS in threads else modes


def micro(ctx: Context, pool: dict[str, Worker], threads: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Request cycles per second and latency, per mode and thread count; a list of repeats each.

    The equal-count variant (:data:`~bench.plan.EQUAL`) runs at :data:`~bench.plan.EQUAL_THREADS` only.
    """
    out: dict[str, dict[str, list[Any]]] = {mode: {} for mode in pool}
    server = db.server_pid(ctx.status)  # None unless the server runs here: no server CPU column then
    for repeat in range(repeats):
        for count in threads:
            for mode in rotated(tuple(pool), repeat):
                if mode == EQUAL and count != EQUAL_THREADS:
                    continue
                before, server_before = pool[mode].connects(), db.process_cpu(server)
                args = {"threads": count, "warmup": ctx.plan.micro_warmup, "duration": ctx.plan.micro_duration}
                result = pool[mode].call("micro", **args)
                result.update(connects=pool[mode].connects() - before, load=os.getloadavg()[0])
                server_after = db.process_cpu(server)
                if server_before is not None and server_after is not None:
                    # The server's CPU per cycle (warm-up included, as the client's): what the
                    # mode costs the database, which a managed server bills and a full one lacks.
                    used = server_after - server_before
                    result["server_cpu_us_per_cycle"] = used / max(1, result["cycles_total"]) * 1e6
                out[mode].setdefault(str(count), []).append(result)
        ctx.log(f"  micro repeat {repeat + 1}/{repeats} done")
    return out


def fairness(ctx: Context, pool: dict[str, Worker]) -> dict[str, list[Any]]:
    """32 threads on max_size 8 doing fixed-length work: the distribution of checkout waits."""
    out: dict[str, list[Any]] = {mode: [] for mode in POOLED if mode in pool}
    plan = ctx.plan
    for repeat in range(plan.repeats):
        for mode in rotated(tuple(out), repeat):
            args = {"duration": plan.fairness_duration, "work_ms": plan.fairness_work_ms, "barrier": False}
            out[mode].append(pool[mode].call("waits", threads=plan.fairness_threads, **args))
    return out


def phases(ctx: Context, pool: dict[str, Worker]) -> dict[str, list[Any]]:
    """Mean microseconds per phase of a cycle on one thread, per mode and repeat."""
    out: dict[str, list[Any]] = {mode: [] for mode in pool if mode != EQUAL}
    for repeat in range(ctx.plan.repeats):
        for mode in rotated(tuple(out), repeat):
            pool[mode].call("phases", count=max(10, ctx.plan.phase_cycles // 10))  # warm
            out[mode].append(pool[mode].call("phases", count=ctx.plan.phase_cycles))
    return out


def http(ctx: Context, port: int, repeats: int) -> dict[str, list[Any]]:
    """gunicorn gthread per mode, all up at once; wrk against each in turn."""
    plan = ctx.plan
    servers: dict[str, Gunicorn] = {}
    try:
        for mode in ctx.modes:
            connects = ctx.run_dir / f"connects-http-{port}-{mode}"
            connects.unlink(missing_ok=True)
            env = mode_env(mode, ctx.server, port=port, max_size=plan.max_size, min_size=0, connects=connects)
            log = ctx.run_dir / f"gunicorn-{port}-{mode}.log"
            servers[mode] = Gunicorn(mode, env, ctx.root, log, workers=plan.http_workers, threads=plan.http_threads)
        for server in servers.values():
            server.wait_ready()
            if plan.http_warmup > 0:
                wrk(server.url, plan.http_warmup, connections=plan.http_workers * plan.http_threads)
        return _http_rounds(ctx, servers, repeats)
    finally:
        for server in servers.values():
            server.stop()


def _http_rounds(ctx: Context, servers: dict[str, Gunicorn], repeats: int) -> dict[str, list[Any]]:
    plan = ctx.plan
    out: dict[str, list[Any]] = {mode: [] for mode in servers}
    for repeat in range(repeats):
        for mode in rotated(tuple(servers), repeat):
            server = servers[mode]
            status_before = db.global_status(ctx.status, "Connections")["Connections"]
            app_before = counter.read(server.connects_file)
            result = wrk(server.url, plan.http_duration, connections=plan.http_workers * plan.http_threads)
            result["server_connections"] = db.global_status(ctx.status, "Connections")["Connections"] - status_before
            result["app_connections"] = counter.read(server.connects_file) - app_before
            result["load"] = os.getloadavg()[0]
            out[mode].append(result)
        ctx.log(f"  http repeat {repeat + 1}/{repeats} done")
    return out


def tls(ctx: Context) -> dict[str, Any]:
    """The micro workload for A and D against a server that requires TLS (:mod:`bench.tls`).

    A pays a TCP and TLS handshake and a login per request; D pays them once
    per pooled connection. Returns the micro result shape, plus the server.
    """
    from bench.tls import tls_server

    with tls_server(ctx.run_dir) as server:
        tls_ctx = dataclasses.replace(ctx, server=server, modes=TLS_MODES)
        sizes = {"max_size": ctx.plan.max_size}
        with workers(tls_ctx, TLS_MODES, tag="tls", port=server.port, **sizes) as pool:
            cipher = pool["D"].call("cipher")
            result = micro(tls_ctx, pool, ctx.plan.tls_threads, ctx.plan.repeats)
    return {"cipher": cipher, "micro": result}


def roundtrips(ctx: Context) -> dict[str, Any]:
    """Client commands per request cycle, counted by a proxy that parses the MySQL protocol."""
    cycles = ctx.plan.roundtrip_cycles
    out: dict[str, Any] = {}
    with (
        proxy(ctx) as counting,
        workers(ctx, ctx.modes, tag="rt", port=counting.port, max_size=ctx.plan.max_size) as pool,
    ):
        for mode, worker in pool.items():
            worker.call("cycles", count=10)  # warm: the pool or the persistent connection is open
            counting.reset()
            worker.call("cycles", count=cycles)
            out[mode] = {"cycles": cycles, **counting.stats()}
    return out


def spike(ctx: Context) -> dict[str, list[Any]]:
    """HikariCP's spike: slow connection setup, many threads at once, short work."""
    plan = ctx.plan
    sizes = {"max_size": plan.spike_max_size, "min_size": plan.spike_min_size}
    out: dict[str, list[Any]] = {mode: [] for mode in ctx.modes}
    with (
        proxy(ctx, connect_delay_ms=plan.spike_connect_ms) as slow,
        workers(ctx, ctx.modes, tag="spike", port=slow.port, **sizes) as pool,
    ):
        for repeat in range(plan.spike_repeats):
            for mode in rotated(ctx.modes, repeat):
                idle = pool[mode].call("fresh_pool", min_size=plan.spike_min_size)["idle"]
                before = pool[mode].connects()
                args = {"threads": plan.spike_threads, "duration": 0.0, "work_ms": plan.spike_work_ms}
                result = pool[mode].call("waits", barrier=True, **args)
                result.update(idle_before=idle, connects=pool[mode].connects() - before)
                pool[mode].call("release")  # keep the server's max_connections for the next mode
                out[mode].append(result)
    return out


def poolcore(ctx: Context) -> dict[str, Any]:
    """Pool core overhead in a process of its own (:mod:`bench.poolcore`)."""
    args = [f"--repeats={ctx.plan.repeats}", f"--duration={ctx.plan.pool_duration}"]
    command = [sys.executable, "-m", "bench.poolcore", *args]
    done = subprocess.run(command, cwd=ctx.root, capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def calibrate(ctx: Context, delays: tuple[float, ...]) -> dict[str, float]:
    """Median COM_PING round trip, directly and through the proxy at each added delay."""
    out = {"direct": db.ping_rtt_ms(ctx.server)}
    for delay in (0.0, *delays):
        with proxy(ctx, delay_ms=delay) as proc:
            out[f"{delay:g}"] = db.ping_rtt_ms(ctx.server, proc.port)
    return out


def profile(ctx: Context, pool: dict[str, Worker], modes: tuple[str, ...]) -> dict[str, str]:
    """pyinstrument text profiles of the micro workload on one thread for *modes*.

    One thread only: pyinstrument samples the thread that started it.
    """
    out = {}
    for mode in modes:
        path = ctx.run_dir / f"profile-{mode}.txt"
        pool[mode].call("profile", threads=1, duration=max(1.0, ctx.plan.micro_duration), path=str(path))
        out[mode] = str(path.relative_to(ctx.root))
    return out


def timed(ctx: Context, name: str, run: Callable[[], Any]) -> tuple[Any, float]:
    """Run one workload, logging its wall time."""
    ctx.log(f"{name} ...")
    started = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - started
    ctx.log(f"{name} done in {elapsed:.1f} s")
    return result, elapsed
