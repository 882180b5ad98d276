"""One mode's Django process for the in-process workloads, driven over a pipe.

``python -m bench.worker`` (mode from ``DMP_BENCH_MODE``) reads one JSON
command per line on standard input and answers one JSON line on the original
standard output; anything else printed goes to standard error. It exits when
its input closes.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.site.settings")


def fresh_pool(min_size: int) -> dict[str, Any]:
    """Start the spike from a new pool holding *min_size* idle connections (C, D, D0)."""
    from django.db import connections

    mode = os.environ.get("DMP_BENCH_MODE", "D")
    wrapper: Any = connections["default"]
    wrapper.close()
    if mode in ("D", "D0"):
        wrapper.close_pool()
        pool = wrapper.pool
        pool.open()  # its maintenance thread opens min_size connections in the background
        deadline = time.monotonic() + 30
        while pool.get_stats()["pool_available"] < min_size and time.monotonic() < deadline:
            time.sleep(0.01)
        return {"idle": pool.get_stats()["pool_available"]}
    if mode == "C":
        from dj_db_conn_pool.core import pool_container

        for pool in pool_container.values():
            pool.dispose()
        _prewarm(min_size)
        return {"idle": sum(p.checkedin() for p in pool_container.values())}
    return {"idle": 0}


def release() -> dict[str, Any]:
    """Close this process's connections and pools: a spike must not hold 50 idle connections."""
    from django.db import connections

    mode = os.environ.get("DMP_BENCH_MODE", "D")
    wrapper: Any = connections["default"]
    wrapper.close()
    if mode in ("D", "D0"):
        wrapper.close_pool()
    elif mode == "C":
        from dj_db_conn_pool.core import pool_container

        for pool in pool_container.values():
            pool.dispose()
    return {}


def _prewarm(count: int) -> None:
    """Check *count* connections out at once and return them (QueuePool keeps them)."""
    from django.db import connections

    gate = threading.Barrier(count)

    def body() -> None:
        connections["default"].ensure_connection()
        gate.wait()
        connections.close_all()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def profile(threads: int, duration: float, path: str) -> dict[str, Any]:
    """Profile the micro workload with pyinstrument (it samples this thread only: use *threads* 1)."""
    from pyinstrument import Profiler

    from bench import cycles

    profiler = Profiler(interval=0.0002)
    profiler.start()
    if threads == 1:
        end = time.perf_counter() + duration
        count = 0
        while time.perf_counter() < end:
            cycles.cycle(count % 1000 + 1)
            count += 1
        result: dict[str, Any] = {"cycles_per_s": count / duration}
    else:
        result = cycles.micro(threads, 0.0, duration)
    profiler.stop()
    with open(path, "w", encoding="utf-8") as out:
        out.write(profiler.output_text(unicode=False, color=False, show_all=False))
    result["path"] = path
    return result


def pool_stats() -> dict[str, Any]:
    """This backend's pool statistics (D, D0), else nothing."""
    from django_mysql_pooled.pool import registry

    pool = registry.get_pool("default")
    return pool.get_stats() if pool is not None else {}


def cipher() -> str:
    """The TLS cipher of this worker's connection (``""``: not encrypted), then close it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        value = str(cursor.fetchone()[1])
    connection.close()
    return value


def handle(command: dict[str, Any]) -> Any:
    from bench import cycles

    op = command.pop("op")
    if op == "micro":
        return cycles.micro(**command)
    if op == "cycles":
        return cycles.cycles(**command)
    if op == "waits":
        return cycles.checkout_waits(**command)
    if op == "fresh_pool":
        return fresh_pool(**command)
    if op == "profile":
        return profile(**command)
    if op == "release":
        return release()
    if op == "phases":
        return cycles.phases(**command)
    if op == "pool_stats":
        return pool_stats()
    if op == "cipher":
        return cipher()
    raise ValueError(f"unknown op {op!r}")


def main() -> int:
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # stray output must not corrupt the protocol
    sys.stdout = sys.stderr
    django.setup()
    replies.write(json.dumps({"ok": True, "result": {"pid": os.getpid()}}) + "\n")
    for line in sys.stdin:
        try:
            reply = {"ok": True, "result": handle(json.loads(line))}
        except Exception:  # noqa: BLE001 - reported to the coordinator
            reply = {"ok": False, "error": traceback.format_exc()}
        replies.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
