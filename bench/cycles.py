"""The in-process workloads, run inside a worker (:mod:`bench.worker`) after ``django.setup()``.

A *cycle* is what a Django request does to the database layer:
``request_started``, one ORM primary-key lookup, ``request_finished``.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import connections

from bench.modes import ROWS
from bench.site.models import Item
from bench.stats import latency_ms, percentile


def cycle(pk: int) -> None:
    """One request's worth of database work."""
    request_started.send(sender=Cycle)
    Item.objects.get(pk=pk)
    request_finished.send(sender=Cycle)


class Cycle:
    """The sender of the request signals."""


def run_threads(count: int, body: Callable[[int], Any]) -> list[Any]:
    """Run *body(index)* in *count* threads; each closes its Django connections at the end."""
    results: list[Any] = [None] * count

    def target(index: int) -> None:
        try:
            results[index] = body(index)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=target, args=(i,), name=f"bench-{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def micro(threads: int, warmup: float, duration: float) -> dict[str, Any]:
    """Cycles completed within the window after *warmup*, and their latencies."""
    started, cpu_started = time.perf_counter(), time.process_time()
    window = (started + warmup, started + warmup + duration)

    def body(index: int) -> tuple[list[float], int, str, int]:
        rng, latencies, errors, error, done = random.Random(index), [], 0, "", 0
        while (t0 := time.perf_counter()) < window[1]:
            done += 1
            try:
                cycle(rng.randint(1, ROWS))
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors, error = errors + 1, repr(exc)
            t1 = time.perf_counter()
            if window[0] <= t1 <= window[1]:
                latencies.append(t1 - t0)
        return latencies, errors, error, done

    results = run_threads(threads, body)
    cpu = time.process_time() - cpu_started
    latencies = [lat for res in results for lat in res[0]]
    total = sum(res[3] for res in results)
    return {
        "cycles_per_s": len(latencies) / duration,
        "latency_ms": latency_ms(latencies),
        "errors": sum(res[1] for res in results),
        "error": next((res[2] for res in results if res[2]), ""),
        "cycles_total": total,  # warm-up included: what connections and CPU are counted over
        # This process's CPU (all threads) per cycle: client-side cost, unaffected by the server's load.
        "cpu_us_per_cycle": cpu / max(1, total) * 1e6,
    }


def cycles(count: int) -> dict[str, Any]:
    """*count* cycles in this (long-lived) thread: a persistent connection stays open across calls."""
    for pk in range(1, count + 1):
        cycle(pk % ROWS + 1)
    return {"cycles": count}


def checkout_waits(threads: int, duration: float, work_ms: float, barrier: bool) -> dict[str, Any]:
    """Threads repeat: ``ensure_connection()`` (timed: the wait), a lookup, *work_ms* of work holding it.

    With *barrier* every thread does one such request at the same instant
    (the spike); otherwise they loop for *duration* (fairness).
    """
    gate = threading.Barrier(threads)
    end = time.perf_counter() + duration

    def body(index: int) -> tuple[list[float], int, str]:
        waits: list[float] = []
        errors, error = 0, ""
        if barrier:
            gate.wait()
        while True:
            t0 = time.perf_counter()
            try:
                request_started.send(sender=Cycle)
                connections["default"].ensure_connection()
                waits.append(time.perf_counter() - t0)
                Item.objects.get(pk=index % ROWS + 1)
                time.sleep(work_ms / 1000)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                errors, error = errors + 1, repr(exc)
            finally:
                request_finished.send(sender=Cycle)
            if barrier or time.perf_counter() >= end:
                return waits, errors, error

    started = time.perf_counter()
    results = run_threads(threads, body)
    waits = [w for res in results for w in res[0]]
    per_thread = [len(res[0]) for res in results]
    return {
        "wait_ms": latency_ms(waits),
        "wait_p90_ms": percentile(waits, 90) * 1000,
        "elapsed_ms": (time.perf_counter() - started) * 1000,
        "per_thread_min": min(per_thread),
        "per_thread_max": max(per_thread),
        "requests": len(waits),
        "errors": sum(res[1] for res in results),
        "error": next((res[2] for res in results if res[2]), ""),
    }


def phases(count: int) -> dict[str, float]:
    """Mean microseconds per phase of a cycle, one thread: what a checkout's time is made of."""
    wrapper = connections["default"]
    totals = dict.fromkeys(("request_started", "connect", "query", "request_finished"), 0.0)
    for index in range(count):
        t0 = time.perf_counter()
        request_started.send(sender=Cycle)
        t1 = time.perf_counter()
        wrapper.ensure_connection()  # B: plus the health check, done on first use below
        t2 = time.perf_counter()
        Item.objects.get(pk=index % ROWS + 1)
        t3 = time.perf_counter()
        request_finished.send(sender=Cycle)
        t4 = time.perf_counter()
        for key, value in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += value
    return {key: value / count * 1e6 for key, value in totals.items()}
