"""Checkin resets on worker threads, so that the returning thread goes on at once.

psycopg_pool does the same (its ``putconn()`` hands a connection that needs a
reset to a ``ReturnConnection`` task on its workers). A returned connection is
not available to a checkout until its reset is done; when every worker is
busy, the returning thread resets the connection itself, so the backlog is
bounded and a slow network cannot pile returned connections up.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from typing import Any, Protocol

__all__ = ["ResetsReturned", "start_workers", "stop_workers"]

logger = logging.getLogger(__name__)

#: Seconds a worker waits for work before it checks that its pool still exists.
IDLE_CHECK = 1.0

_STOP = object()


class ResetsReturned(Protocol):
    """What a worker needs of its pool."""

    @property
    def name(self) -> str: ...

    def reset_returned(self, entry: Any) -> None: ...


def start_workers(pool: ResetsReturned, work: queue.SimpleQueue[Any], count: int) -> list[threading.Thread]:
    """Start *count* daemon threads calling ``pool.reset_returned(entry)`` for each entry put on *work*."""
    threads = []
    for number in range(count):
        thread = threading.Thread(
            target=_loop,
            args=(weakref.ref(pool), work),
            name=f"django_mysql_pooled-{pool.name}-return-{number}",
            daemon=True,
        )
        thread.start()
        threads.append(thread)
    return threads


def stop_workers(work: queue.SimpleQueue[Any], threads: list[threading.Thread], timeout: float) -> None:
    """Stop the workers after what is queued now, waiting up to *timeout* seconds for them."""
    for _ in threads:
        work.put(_STOP)
    current = threading.current_thread()
    for thread in threads:
        if thread is not current:
            thread.join(timeout)


def _loop(ref: weakref.ref[ResetsReturned], work: queue.SimpleQueue[Any]) -> None:
    while True:
        try:
            entry = work.get(timeout=IDLE_CHECK)
        except queue.Empty:
            if ref() is None:
                return  # the pool was garbage-collected without close()
            continue
        if entry is _STOP:
            return
        pool = ref()
        if pool is None:
            return
        try:
            pool.reset_returned(entry)
        except Exception:  # noqa: BLE001 - the worker must survive anything
            logger.exception("pool %r: a checkin reset failed", pool.name)
        del pool, entry
