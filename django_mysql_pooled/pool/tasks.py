"""The pool's background threads, each a small loop holding only a weak reference to its pool.

A thread must not keep an unused pool alive: it takes a strong reference for
one round of work at a time, and ends when the pool is closed, garbage
collected, or its stop event is set (psycopg_pool's ``sched``/``MaintenanceTask``
follow the same rule).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Protocol

__all__ = ["PoolTask", "start"]

logger = logging.getLogger(__name__)


class PoolTask(Protocol):
    """What a task needs of its pool."""

    @property
    def name(self) -> str: ...

    @property
    def closed(self) -> bool: ...


def start(
    pool: PoolTask,
    work: Callable[[PoolTask], object],
    *,
    purpose: str,
    stop: threading.Event,
    interval: float,
    first: bool,
) -> threading.Thread:
    """Start a daemon thread running ``work(pool)`` every *interval* seconds.

    :param work: an unbound method of the pool's class, e.g.
        ``ConnectionPool.maintenance_round``; its exceptions are logged and the
        loop goes on.
    :param purpose: the thread's name suffix (``django_mysql_pooled-<alias>-<purpose>``).
    :param first: run once at start instead of after the first *interval*.
    """
    thread = threading.Thread(
        target=_loop,
        args=(weakref.ref(pool), work, purpose, stop, interval, first),
        name=f"django_mysql_pooled-{pool.name}-{purpose}",
        daemon=True,
    )
    thread.start()
    return thread


def _loop(
    ref: weakref.ref[PoolTask],
    work: Callable[[PoolTask], object],
    purpose: str,
    stop: threading.Event,
    interval: float,
    first: bool,
) -> None:
    if not first and stop.wait(interval):
        return
    while True:
        pool = ref()
        if pool is None or pool.closed:
            return
        try:
            work(pool)
        except Exception:  # noqa: BLE001 - the thread must survive anything
            logger.exception("pool %r: %s failed", pool.name, purpose)
        del pool
        if stop.wait(interval):
            return
