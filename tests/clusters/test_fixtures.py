"""The cluster fixtures themselves: replication, a node's crash and return, desync, rejected queries, promotion.

What the failover scenarios rely on, shown on the real servers: a write on
one Galera node is read on another; a killed node leaves the cluster and
rejoins by IST; ``wsrep_desync`` and ``wsrep_reject_queries`` change what a
node reports and answers; a replica follows its primary, and after a
promotion the old primary comes back read-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import MySQLdb
import pytest

from tests.clusters.conftest import app_connect
from tests.clusters.servers import GaleraCluster, GaleraNode, ReplicationPair
from tests.faults.conftest import wait_until
from tests.faults.mariadb import DATABASE

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

WSREP_NOT_READY = 1047  # ER_UNKNOWN_COM_ERROR: "WSREP has not yet prepared node for application use"
READ_ONLY = 1290  # ER_OPTION_PREVENTS_STATEMENT


def _execute(conn: MySQLdb.Connection, sql: str, args: tuple[object, ...] | None = None) -> list[tuple[object, ...]]:
    cursor = conn.cursor()
    cursor.execute(sql, args)
    return list(cursor.fetchall())


def _reader(node: GaleraNode) -> Any:
    """An application connection to *node* that first waits for what the cluster committed (read-your-writes)."""
    conn = app_connect(node)
    _execute(conn, "SET SESSION wsrep_sync_wait = 1")
    return conn


def _table(conn: MySQLdb.Connection, name: str) -> None:
    _execute(conn, f"DROP TABLE IF EXISTS {name}")
    _execute(conn, f"CREATE TABLE {name} (id INT PRIMARY KEY, node VARCHAR(10)) ENGINE=InnoDB")


# -- Galera ------------------------------------------------------------------------------


def test_a_write_on_node_1_is_read_on_node_3(galera_cluster: GaleraCluster, figures: Callable[..., None]) -> None:
    node1, _, node3 = galera_cluster.nodes
    writer = app_connect(node1)
    _table(writer, "fixture_rows")
    _execute(writer, "INSERT INTO fixture_rows VALUES (1, 'node1')")
    writer.close()
    reader = _reader(node3)
    assert _execute(reader, "SELECT id, node FROM fixture_rows") == [(1, "node1")]
    reader.close()
    figures(cluster_start_s=galera_cluster.started_in, size=len(galera_cluster.nodes))


@pytest.mark.parametrize("index", [1, 0], ids=["node2", "node1-the-bootstrap-node"])
def test_a_killed_node_rejoins_by_ist(galera_cluster: GaleraCluster, figures: Callable[..., None], index: int) -> None:
    node = galera_cluster.nodes[index]
    other = galera_cluster.nodes[(index + 1) % 3]
    cluster_uuid = other.status("wsrep_cluster_state_uuid")
    killed_at = time.monotonic()
    node.kill()
    evicted_s = galera_cluster.wait_size(2, timeout=30.0)
    writer = app_connect(other)
    _table(writer, "while_down")
    for i in range(50):
        _execute(writer, "INSERT INTO while_down VALUES (%s, %s)", (i, other.name))
    writer.close()
    rejoin_s = galera_cluster.start_node(node, timeout=90.0)
    galera_cluster.wait_size(3, timeout=30.0)
    transfer = galera_cluster.state_transfer(node)
    figures(evicted_s=evicted_s, rejoin_s=rejoin_s, transfer=transfer, down_s=time.monotonic() - killed_at)
    assert node.status("wsrep_local_state_comment") == "Synced"
    assert node.status("wsrep_cluster_state_uuid") == cluster_uuid, "the restarted node bootstrapped a new cluster"
    assert transfer == "IST", node.log_since_start()[-3000:]
    reader = _reader(node)
    assert _execute(reader, "SELECT COUNT(*) FROM while_down") == [(50,)]
    reader.close()


def test_a_node_stopped_cleanly_leaves_at_once_and_rejoins_by_ist(
    galera_cluster: GaleraCluster, figures: Callable[..., None]
) -> None:
    node3 = galera_cluster.nodes[2]
    node3.stop()
    left_s = galera_cluster.wait_size(2, timeout=10.0)
    rejoin_s = galera_cluster.start_node(node3, timeout=90.0)
    figures(left_s=left_s, rejoin_s=rejoin_s, transfer=galera_cluster.state_transfer(node3))
    assert galera_cluster.state_transfer(node3) == "IST"


def test_a_desynced_node_is_not_synced_but_still_answers(galera_cluster: GaleraCluster) -> None:
    node2 = galera_cluster.nodes[1]
    galera_cluster.desync(node2, True)
    assert node2.status("wsrep_local_state_comment") != "Synced"
    assert node2.status("wsrep_desync_count") == "1"
    conn = app_connect(node2)
    assert _execute(conn, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (DATABASE,))
    conn.close()
    galera_cluster.desync(node2, False)
    galera_cluster.wait_synced(node2, timeout=30.0)


#: What a pool might send to check a node, and what else an application sends.
PROBES = ("SELECT 1", "SELECT @@global.read_only", "SHOW GLOBAL STATUS LIKE 'wsrep_ready'", "DO 1")


def _answers(conn: Any, table: str) -> dict[str, object]:
    """``"ok"`` or the error number, for each of :data:`PROBES` and a read of *table*."""
    answers: dict[str, object] = {}
    for sql in (*PROBES, f"SELECT COUNT(*) FROM {table}"):
        try:
            _execute(conn, sql)
            answers[sql] = "ok"
        except MySQLdb.OperationalError as exc:
            answers[sql] = exc.args[0]
    return answers


#: A Galera node that is not ready, or rejects queries: statements without a table pass, except DO.
NOT_READY_ANSWERS = dict.fromkeys(PROBES[:3], "ok") | {"DO 1": WSREP_NOT_READY}


def test_rejected_queries_fail_with_1047_but_select_without_a_table_and_ping_pass(
    galera_cluster: GaleraCluster,
) -> None:
    """``wsrep_reject_queries=ALL``: ``SELECT 1``, ``SELECT @@global.read_only``, ``SHOW`` and
    ``COM_PING`` still succeed, and the node still says ``Synced``; ``DO 1`` and every statement
    that reads a table fail with 1047. ``ALL_KILL`` also cuts the connections open."""
    node1, node2, _ = galera_cluster.nodes
    setup = app_connect(node1)
    _table(setup, "rejected")
    setup.close()
    conn = app_connect(node2)
    galera_cluster.reject_queries(node2, "ALL")
    assert _answers(conn, "rejected") == NOT_READY_ANSWERS | {"SELECT COUNT(*) FROM rejected": WSREP_NOT_READY}
    conn.ping()
    assert (node2.status("wsrep_ready"), node2.status("wsrep_local_state_comment")) == ("ON", "Synced")
    fresh = app_connect(node2)  # new connections are accepted
    with pytest.raises(MySQLdb.OperationalError, match="WSREP has not yet prepared node") as caught:
        _execute(fresh, "INSERT INTO rejected VALUES (1, 'node2')")
    assert caught.value.args[0] == WSREP_NOT_READY, caught.value
    fresh.close()
    galera_cluster.reject_queries(node2, "ALL_KILL")  # and existing connections are cut
    with pytest.raises(MySQLdb.OperationalError) as cut:
        _execute(conn, "SELECT 1")
    assert cut.value.args[0] in (2006, 2013), cut.value  # server gone away / lost connection
    conn.close()
    galera_cluster.reject_queries(node2, "NONE")
    again = _reader(node2)
    assert _answers(again, "rejected") == dict.fromkeys([*PROBES, "SELECT COUNT(*) FROM rejected"], "ok")
    again.close()


def test_a_node_without_quorum_answers_like_a_rejecting_one(
    galera_cluster: GaleraCluster, figures: Callable[..., None]
) -> None:
    """Two nodes of three killed: the survivor is ``non-Primary``, ``wsrep_ready=OFF``, and answers
    like a node with ``wsrep_reject_queries=ALL``. ``pc.bootstrap`` makes it primary again."""
    node1, node2, node3 = galera_cluster.nodes
    setup = app_connect(node1)
    _table(setup, "quorum")
    setup.close()
    conn = app_connect(node1)  # no wsrep_sync_wait: with it, a SELECT fails too (1205, the wait times out)
    node2.kill()
    node3.kill()
    try:
        lost_s = wait_until(
            lambda: node1.status("wsrep_cluster_status") == "non-Primary", 30.0, "node1 kept a primary component"
        )
        assert node1.status("wsrep_ready") == "OFF"
        answers = _answers(conn, "quorum")
    finally:
        node1.query("SET GLOBAL wsrep_provider_options = 'pc.bootstrap=YES'")
        conn.close()
    figures(quorum_lost_s=lost_s, answers=answers)
    assert answers == NOT_READY_ANSWERS | {"SELECT COUNT(*) FROM quorum": WSREP_NOT_READY}


# -- primary and replica -------------------------------------------------------------------


def test_a_write_on_the_primary_reaches_the_read_only_replica(
    replication_pair: ReplicationPair, figures: Callable[..., None]
) -> None:
    primary = app_connect(replication_pair.primary)
    _table(primary, "replicated")
    _execute(primary, "INSERT INTO replicated VALUES (1, 'server1')")
    primary.close()
    lag_s = replication_pair.wait_replicated()
    replica = app_connect(replication_pair.replica)
    assert _execute(replica, "SELECT id, node FROM replicated") == [(1, "server1")]
    with pytest.raises(MySQLdb.OperationalError) as caught:
        _execute(replica, "INSERT INTO replicated VALUES (2, 'server2')")
    assert caught.value.args[0] == READ_ONLY, caught.value
    replica.close()
    figures(pair_start_s=replication_pair.started_in, lag_s=lag_s)


def test_the_promoted_replica_takes_writes_and_the_old_primary_returns_read_only(
    replication_pair: ReplicationPair, figures: Callable[..., None]
) -> None:
    server1, server2 = replication_pair.servers
    setup = app_connect(server1)
    _table(setup, "promoted")
    _execute(setup, "INSERT INTO promoted VALUES (1, 'server1')")
    setup.close()
    replication_pair.wait_replicated()
    replication_pair.kill_primary()
    began = time.monotonic()
    replication_pair.promote_replica()
    promoted_s = time.monotonic() - began
    assert replication_pair.primary is server2
    writer = app_connect(server2)
    _execute(writer, "INSERT INTO promoted VALUES (2, 'server2')")
    writer.close()
    replication_pair.restart_old_primary_read_only()
    assert server1.query("SELECT @@read_only") == [(1,)]
    replication_pair.wait_replicated()
    old = app_connect(server1)
    assert _execute(old, "SELECT id FROM promoted ORDER BY id") == [(1,), (2,)]
    with pytest.raises(MySQLdb.OperationalError) as caught:
        _execute(old, "INSERT INTO promoted VALUES (3, 'server1')")
    assert caught.value.args[0] == READ_ONLY, caught.value
    old.close()
    figures(promote_s=promoted_s)
