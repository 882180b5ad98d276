"""Pool core overhead: checkout + checkin pairs with fake connections, no I/O.

``django_mysql_pooled.pool.pool.ConnectionPool`` (with a no-op reset callable, as
the backend always passes one) against SQLAlchemy's ``QueuePool`` (no
pre-ping, its default rollback-on-return calling the fake's no-op
``rollback``). Run as ``python -m bench.poolcore`` so nothing else shares the
process; it prints one JSON object. The figure is wall-clock time divided by
the pairs all threads completed (aggregate cost, not per-thread latency).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.pool import QueuePool

from django_mysql_pooled.pool.pool import ConnectionPool


class FakeConnection:
    """Stands in for a DB-API connection."""

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


def _ours(size: int) -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[], None]]:
    pool: ConnectionPool[FakeConnection] = ConnectionPool(
        lambda timeout: FakeConnection(),
        reset=lambda conn: "reset_connection",
        close=FakeConnection.close,
        max_size=size,
    )
    return pool.getconn, pool.putconn, pool.close


def _queuepool(size: int) -> tuple[Callable[[], Any], Callable[[Any], None], Callable[[], None]]:
    pool = QueuePool(FakeConnection, pool_size=size, max_overflow=0, pre_ping=False, timeout=30)
    return pool.connect, lambda fairy: fairy.close(), pool.dispose


IMPLEMENTATIONS = {"ConnectionPool": _ours, "QueuePool": _queuepool}


def measure(name: str, threads: int, size: int, duration: float) -> float:
    """Microseconds of wall-clock time per checkout+checkin pair."""
    get, put, close = IMPLEMENTATIONS[name](size)
    put(get())  # warm: the first checkout opens the pool
    counts = [0] * threads
    end = time.perf_counter() + duration
    gate = threading.Barrier(threads + 1)

    def body(index: int) -> None:
        done = 0
        gate.wait()
        while time.perf_counter() < end:
            for _ in range(100):
                put(get())
            done += 100
        counts[index] = done

    workers = [threading.Thread(target=body, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    gate.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    close()
    return elapsed / sum(counts) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--cases",
        default="1:16,16:16,16:8",
        help="THREADS:SIZE pairs (SIZE is max_size / pool_size; below THREADS, checkouts wait for handoffs)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in IMPLEMENTATIONS}
    for case in args.cases.split(","):
        threads, size = (int(n) for n in case.split(":"))
        for repeat in range(args.repeats):
            order = list(IMPLEMENTATIONS) if repeat % 2 == 0 else list(reversed(IMPLEMENTATIONS))
            for name in order:
                results[name].setdefault(case, []).append(measure(name, threads, size, args.duration))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
