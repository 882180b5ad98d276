"""Failover on a real Galera cluster under load: a node killed, shut down, desynced or rejecting queries, and back.

Six threads, each with its own wrapper of one alias whose ``HOST`` lists the
three nodes, insert rows through one pool of four connections while a node
the pool uses fails. What the issue asks of the pool: callers lose only the
statements in flight on that node; every checkout that starts afterwards
succeeds on another node within its ``timeout``; the pool goes back when the
node is ``Synced`` again; no acknowledged write is missing on any node.
Figures: errors seen by callers (and their kinds), seconds to fail over
(until every thread completed a request started after the failure),
seconds for the node to rejoin (and whether by IST), seconds until the pool
uses it again, acknowledged writes and how many of them are missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.clusters.conftest import TargetFactory
from tests.clusters.load import acknowledged, create_writes, host_sizes, insert, only_on, recovered, stored_rows
from tests.clusters.servers import GaleraCluster, GaleraNode
from tests.faults.conftest import TOLERANCE, Clients, PoolTarget, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(240)]

THREADS = 6
POOL = {
    "max_size": 4,
    "timeout": 5.0,  # seconds a checkout may take, failover included
    "host_backoff": 0.5,
    "host_backoff_max": 2.0,  # a node back in service is probed within about 2.5 s
    "require_synced": True,
}
#: A request that started this long after the failure was not in flight when it happened
#: (SIGKILL is asynchronous: the kernel closes the node's sockets a moment later).
IN_FLIGHT = 0.25
#: Seconds a node rejects queries in the scenario; each connection open to it may fail in the first
#: :data:`SETTLE` seconds, none afterwards.
REJECT_FOR = 5.0
SETTLE = 1.0


def _figures_of(
    clients: Clients, failed_at: float, target: PoolTarget, table: str, nodes: list[GaleraNode]
) -> dict[str, Any]:
    """The figures common to every scenario, and the acknowledged writes missing on each running node."""
    acked = acknowledged(clients)
    missing = {node.name: len(acked - stored_rows(node, table)) for node in nodes if node.running}
    return {
        "errors": len(clients.errors()),
        "error_kinds": clients.error_kinds(),
        "late_errors": len(clients.errors(started_after=failed_at + IN_FLIGHT)),
        "acknowledged": len(acked),
        "missing": missing,
        "failovers": target.stats().get("failovers", 0),
        "max_request_s": clients.max_duration(),
    }


@pytest.mark.parametrize(
    ("policy", "index", "how"),
    [("failover", 0, "sigkill"), ("failover", 0, "shutdown"), ("balance", 1, "sigkill")],
    ids=["failover-sigkill-node1", "failover-shutdown-node1", "balance-sigkill-node2"],
)
def test_a_node_in_use_fails_and_comes_back(  # long: one scenario, measured step by step
    galera_cluster: GaleraCluster,
    galera_target: TargetFactory,
    figures: Callable[..., None],
    policy: str,
    index: int,
    how: str,
) -> None:
    node = galera_cluster.nodes[index]
    table = create_writes(galera_cluster.nodes[0], "galera_writes")
    # balance moves connections only as they are replaced: a short lifetime lets the node back in
    lifetime = {"max_lifetime": 2.0} if policy == "balance" else {}
    target = galera_target({**POOL, "policy": policy, **lifetime})
    with Clients(target, THREADS, insert(table), pause=0.005) as clients:
        clients.wait_for_successes(100)
        assert host_sizes(target)[node.address] > 0, f"{node.name} is not in use: {host_sizes(target)}"
        survivors = {other: _log_size(other) for other in galera_cluster.nodes if other is not node}
        failed_at = time.monotonic()
        if how == "sigkill":
            node.kill()
        else:
            node.stop()
        failed_over_at = clients.recovered_at(failed_at, timeout=30.0)
        evicted_s = galera_cluster.wait_size(2, timeout=30.0)
        time.sleep(1.0)  # load on two nodes
        restarted_at = time.monotonic()
        rejoin_s = galera_cluster.start_node(node, timeout=90.0)
        back = only_on(target, node.address) if policy == "failover" else lambda: host_sizes(target)[node.address] > 0
        return_s = wait_until(back, 15.0, f"the pool did not use {node.name} again: {host_sizes(target)}")
        time.sleep(0.5)  # load after the return
    values = _figures_of(clients, failed_at, target, table, galera_cluster.nodes)
    figures(
        failover_s=failed_over_at - failed_at,
        evicted_s=evicted_s,
        rejoin_s=rejoin_s,
        transfer=galera_cluster.state_transfer(node),
        return_s=return_s,
        down_s=restarted_at - failed_at,
        **values,
    )
    if values["late_errors"] and (lost := _lost_primary(survivors)):
        # Every node then refuses queries (1047): nothing a client can do. Seen once in a clean-clone
        # CI run on 2 cores (both survivors NON_PRIM for ~3 s while the killed node was evicted).
        pytest.skip(f"Galera lost the primary component on the surviving nodes {lost}, not a pool failure")
    assert values["late_errors"] == 0, clients.errors(started_after=failed_at + IN_FLIGHT)[:5]
    assert values["errors"] <= THREADS, values["error_kinds"]  # at most one request in flight per thread
    assert all(n == 0 for n in values["missing"].values()), values["missing"]
    assert failed_over_at - failed_at < POOL["timeout"] + TOLERANCE


def test_a_desynced_node_gets_no_new_connections_and_is_used_again_when_synced(
    galera_cluster: GaleraCluster, galera_target: TargetFactory, figures: Callable[..., None]
) -> None:
    """``wsrep_desync=ON`` breaks no statement: with ``require_synced`` the connections to the node are
    replaced (short ``max_lifetime``) by connections to the next node, and move back once it is Synced."""
    node1 = galera_cluster.nodes[0]
    table = create_writes(node1, "desync_writes")
    target = galera_target({**POOL, "max_lifetime": 1.0})
    with Clients(target, THREADS, insert(table), pause=0.005) as clients:
        clients.wait_for_successes(100)
        assert only_on(target, node1.address)(), host_sizes(target)
        desynced_at = time.monotonic()
        galera_cluster.desync(node1, True)
        moved_s = wait_until(lambda: host_sizes(target)[node1.address] == 0, 15.0, "connections stayed on node1")
        time.sleep(1.0)
        galera_cluster.desync(node1, False)
        synced_s = galera_cluster.wait_synced(node1, timeout=30.0)
        return_s = wait_until(only_on(target, node1.address), 15.0, f"no return to node1: {host_sizes(target)}")
        time.sleep(0.5)
    values = _figures_of(clients, desynced_at, target, table, galera_cluster.nodes)
    figures(moved_s=moved_s, synced_s=synced_s, return_s=return_s, **values)
    assert values["errors"] == 0, values["error_kinds"]
    assert all(n == 0 for n in values["missing"].values()), values["missing"]


@pytest.mark.parametrize("reject", ["ALL", "ALL_KILL"])
def test_a_node_rejecting_queries_is_left_and_used_again_when_it_accepts_them(
    galera_cluster: GaleraCluster, galera_target: TargetFactory, figures: Callable[..., None], reject: str
) -> None:
    """``wsrep_reject_queries``: each connection open to the node fails once (1047, or 2013 with
    ``ALL_KILL``) and takes the node out; the pool must not come back to it while it still rejects
    (a probe's connect succeeds and the node still says ``Synced``), and must when it accepts again."""
    node1 = galera_cluster.nodes[0]
    table = create_writes(node1, "rejected_writes")
    target = galera_target(dict(POOL))
    with Clients(target, THREADS, insert(table), pause=0.005) as clients:
        clients.wait_for_successes(100)
        assert only_on(target, node1.address)(), host_sizes(target)
        open_on_node1 = host_sizes(target)[node1.address]
        rejected_at = time.monotonic()
        galera_cluster.reject_queries(node1, reject)
        time.sleep(REJECT_FOR)  # long enough for probes of node1
        accepted_at = time.monotonic()
        galera_cluster.reject_queries(node1, "NONE")
        return_s = wait_until(only_on(target, node1.address), 15.0, f"no return to node1: {host_sizes(target)}")
        time.sleep(0.5)
    failed_over_at = recovered(clients, rejected_at)
    settled_at = rejected_at + SETTLE
    errors_while_rejecting = [o for o in clients.errors(started_after=settled_at) if o.started < accepted_at]
    values = _figures_of(clients, rejected_at, target, table, galera_cluster.nodes)
    figures(
        failover_s=None if failed_over_at is None else failed_over_at - rejected_at,
        errors_while_rejecting=len(errors_while_rejecting),
        open_on_node1=open_on_node1,
        return_s=return_s,
        rejected_s=accepted_at - rejected_at,
        **values,
    )
    assert values["errors"] <= open_on_node1, values["error_kinds"]  # one failed statement per connection
    assert not errors_while_rejecting, errors_while_rejecting[:3]
    assert all(n == 0 for n in values["missing"].values()), values["missing"]


def _log_size(node: GaleraNode) -> int:
    return node.log_file.stat().st_size if node.log_file.exists() else 0


def _lost_primary(offsets: dict[GaleraNode, int]) -> list[str]:
    """The nodes whose error log shows a non-Primary view after their *offsets* (quorum lost)."""
    lost = []
    for node, offset in offsets.items():
        with node.log_file.open("rb") as log:
            log.seek(offset)
            if b"view(view_id(NON_PRIM" in log.read():
                lost.append(node.name)
    return lost
