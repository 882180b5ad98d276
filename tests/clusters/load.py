"""Load on a pool over several servers: the writes clients make, what each server stored, where connections are.

The clients are the fault tests' :class:`~tests.faults.conftest.Clients`
(threads, each with its own Django wrapper of one alias); the pools are
their :class:`~tests.faults.conftest.PoolTarget` with a ``HOST`` list
(``cluster_target`` in ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.clusters.node import ClusterNode
from tests.faults.conftest import Clients, PoolTarget, Work
from tests.faults.mariadb import DATABASE

__all__ = [
    "acknowledged",
    "count_rows",
    "create_writes",
    "host_sizes",
    "insert",
    "only_on",
    "recovered",
    "stored_rows",
]


def create_writes(node: ClusterNode, table: str) -> str:
    """An empty InnoDB table ``(client, seq)`` on *node* (a Galera cluster or a primary replicates it)."""
    conn = node.connect(db=DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute(f"CREATE TABLE {table} (client INT, seq INT, PRIMARY KEY (client, seq)) ENGINE=InnoDB")
    finally:
        conn.close()
    return table


def insert(table: str) -> Work:
    """One request: ``INSERT (client, seq)`` in autocommit; a success is an acknowledged write."""

    def work(db: Any, client: int, seq: int) -> None:
        with db.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} (client, seq) VALUES (%s, %s)", [client, seq])

    return work


def count_rows(table: str) -> Work:
    """One read-only request: ``SELECT COUNT(*)`` of *table*."""

    def work(db: Any, client: int, seq: int) -> None:
        with db.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {table}")
            cursor.fetchall()

    return work


def acknowledged(clients: Clients) -> set[tuple[int, int]]:
    """The ``(client, seq)`` of every request that succeeded."""
    return {(o.client, o.seq) for o in clients.successes() if o.seq >= 0}


def recovered(clients: Clients, since: float) -> float | None:
    """When the last client completed its first successful request started after *since*
    (``None``: a client never did). :meth:`Clients.recovered_at` without waiting or failing."""
    firsts: dict[int, float] = {}
    for outcome in clients.successes(started_after=since):
        firsts.setdefault(outcome.client, outcome.ended)
    return max(firsts.values()) if len(firsts) == clients.n else None


def stored_rows(node: ClusterNode, table: str) -> set[tuple[int, int]]:
    """The rows *node* holds once it has applied everything its cluster committed (``wsrep_sync_wait``)."""
    conn = node.connect(db=DATABASE)
    try:
        cursor = conn.cursor()
        if node.variable("wsrep_on") == "ON":
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.execute(f"SELECT client, seq FROM {table}")
        return {(int(client), int(seq)) for client, seq in cursor.fetchall()}
    finally:
        conn.close()


def host_sizes(target: PoolTarget) -> dict[str, int]:
    """Open connections per ``"host:port"`` in *target*'s pool."""
    return {label: int(str(values["pool_size"])) for label, values in target.pool.get_host_stats().items()}


def only_on(target: PoolTarget, address: str) -> Callable[[], bool]:
    """A predicate: the pool's connections are all on *address* (at least one)."""

    def check() -> bool:
        sizes = host_sizes(target)
        return sizes.get(address, 0) > 0 and all(n == 0 for label, n in sizes.items() if label != address)

    return check
