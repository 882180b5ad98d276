"""The process-wide registry of pools, one per database alias.

A pool is built lazily on the first checkout and published with
``dict.setdefault`` so that threads racing to build it agree on one (the
losers' pools were never opened, so they hold no connections). Each pool
remembers the PID that created it: after ``fork()`` the child drops every
inherited pool without closing the parent's sessions and starts empty.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from django_mysql_pooled.pool.pool import ConnectionPool

__all__ = ["all_pools", "forget_all_after_fork", "get_pool", "publish_pool", "remove_pool"]

_pools: dict[str, ConnectionPool[Any]] = {}
_lock = threading.Lock()


#: ``get_pool(alias)``: the live pool of *alias* in this process, or ``None``.
#: The dict's own ``get`` (called at every checkout). No getpid() here (a system
#: call per checkout): the fork hook below empties the registry in a child
#: before any of its code runs.
get_pool: Callable[[str], ConnectionPool[Any] | None] = _pools.get


def publish_pool(alias: str, pool: ConnectionPool[Any]) -> ConnectionPool[Any]:
    """Register *pool* for *alias* unless another thread won; return the winner."""
    return _pools.setdefault(alias, pool)


def remove_pool(alias: str, pool: ConnectionPool[Any] | None = None) -> ConnectionPool[Any] | None:
    """Unregister the pool of *alias* (only *pool*, if given) and return it."""
    with _lock:
        current = _pools.get(alias)
        if current is None or (pool is not None and current is not pool):
            return None
        return _pools.pop(alias)


def all_pools() -> dict[str, ConnectionPool[Any]]:
    """Return a snapshot of the registered pools by alias."""
    return dict(_pools)


def forget_all_after_fork() -> None:
    """In a forked child: drop every inherited pool without ``COM_QUIT``."""
    global _lock
    _lock = threading.Lock()
    pools = list(_pools.values())
    _pools.clear()
    for pool in pools:
        if pool.pid != os.getpid():
            pool.forget_after_fork()


os.register_at_fork(after_in_child=forget_all_after_fork)
