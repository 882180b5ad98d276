"""Galera's own semantics through the pool: a certification conflict, and ``wsrep_sync_wait`` across resets.

Two transactions that update the same row on two nodes both run; the first
``COMMIT`` wins and the second is rolled back by certification with error
1213 (a deadlock), which Django raises as ``OperationalError`` at
``COMMIT``; the connection stays usable (the next statement on it works).
``wsrep_sync_wait`` set by ``init_command`` is in force after every reset
(the pool runs ``init_command`` again after ``COM_RESET_CONNECTION``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import OperationalError

from tests.clusters.conftest import TargetFactory, app_connect
from tests.clusters.servers import GaleraCluster
from tests.faults.conftest import PoolTarget

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

DEADLOCK = 1213


def _on_one_node(make: TargetFactory, node: Any, pool: dict[str, Any], **options: Any) -> PoolTarget:
    """An alias on *node* alone (``HOST`` and ``PORT``, one server: no host code involved)."""
    target = make(pool, **options)
    target.settings["HOST"], target.settings["PORT"] = node.host, str(node.port)
    return target


def _one_row(cluster: GaleraCluster) -> None:
    conn = app_connect(cluster.nodes[0])
    try:
        cursor = conn.cursor()
        cursor.execute("CREATE TABLE IF NOT EXISTS certify (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
        cursor.execute("REPLACE INTO certify VALUES (1, 0)")
    finally:
        conn.close()
    cluster.wait_synced(cluster.nodes[1])


def test_a_certification_conflict_is_a_1213_at_commit_and_the_connection_stays_usable(
    galera_cluster: GaleraCluster, galera_target: TargetFactory, figures: Any
) -> None:
    _one_row(galera_cluster)
    first = _on_one_node(galera_target, galera_cluster.nodes[0], {"max_size": 1})
    second = _on_one_node(galera_target, galera_cluster.nodes[1], {"max_size": 1})
    a, b = first.wrapper(), second.wrapper()
    try:
        with a.cursor() as cursor:  # warm both: each checks its connection out
            cursor.execute("SELECT 1")
        with b.cursor() as cursor:
            cursor.execute("SELECT 1")
        a.set_autocommit(False)
        b.set_autocommit(False)
        with a.cursor() as cursor:
            cursor.execute("UPDATE certify SET v = 1 WHERE id = 1")
        with b.cursor() as cursor:
            cursor.execute("UPDATE certify SET v = 2 WHERE id = 1")
        a.commit()  # replicated: node 2's transaction now conflicts with it
        with pytest.raises(OperationalError) as excinfo:
            b.commit()
        code = excinfo.value.__cause__.args[0] if excinfo.value.__cause__ is not None else None
        assert code == DEADLOCK, excinfo.value
        b.rollback()
        b.set_autocommit(True)
        with b.cursor() as cursor:  # the same connection serves on
            cursor.execute("SELECT v FROM certify WHERE id = 1")
            assert cursor.fetchone() == (1,)
        a.set_autocommit(True)
    finally:
        a.close()
        b.close()
    second.pool.drain()
    closed = second.stats()["closes_broken"]
    figures(error=f"OperationalError({code})", winner_value=1, closes_broken=closed)
    assert closed == 0, "the connection that lost certification was closed"


def test_wsrep_sync_wait_from_init_command_survives_the_reset(
    galera_cluster: GaleraCluster, galera_target: TargetFactory
) -> None:
    target = _on_one_node(
        galera_target, galera_cluster.nodes[0], {"max_size": 1}, init_command="SET wsrep_sync_wait = 1"
    )
    seen: list[Any] = []

    def request() -> None:
        db = target.wrapper()
        try:
            with db.cursor() as cursor:
                cursor.execute("SELECT @@session.wsrep_sync_wait, CONNECTION_ID()")
                seen.append(cursor.fetchone())
                cursor.execute("SET SESSION wsrep_sync_wait = 0")  # a request changes it; the reset restores it
        finally:
            db.close()
            target.pool.drain()

    for _ in range(3):
        thread = threading.Thread(target=request)
        thread.start()
        thread.join(30)
    assert [row[0] for row in seen] == [1, 1, 1]
    assert len({row[1] for row in seen}) == 1, "one connection, reset between requests"
    assert target.stats()["resets_num"] >= 2
