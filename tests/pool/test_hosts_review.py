"""Review of the multi-host core: reproductions of its open findings, on fake servers (strict xfails).

Each test states what the pool should do and fails today; the reason names
the finding (HOST-n, as in the review report). When a fix lands the test
passes, ``strict`` turns that into a failure, and the marker goes (fixed
findings live on as plain tests in ``test_hosts*.py``).
"""

from __future__ import annotations

from typing import Any

import pytest

from django_mysql_pooled.pool.hosts import DOWN, FAILOVER, HostSet
from tests.pool.fake_hosts import A, B, C, FakeHosts, HostDown, host_of, states


@pytest.mark.xfail(
    strict=True,
    reason="HOST-7: host_backoff=0 (accepted by the settings) never grows: a down host is probed every "
    "PROBE_INTERVAL (0.1 s) forever, host_backoff_max notwithstanding",
)
def test_a_zero_backoff_still_grows_towards_the_cap() -> None:
    hosts = HostSet([A, B], policy=FAILOVER, backoff=0.0, backoff_max=30.0)
    for _ in range(5):
        hosts.mark_down(hosts.hosts[0], 0.0, "refused")
    assert hosts.hosts[0].backoff > 0.0


@pytest.mark.xfail(
    strict=True,
    reason="HOST-19: when no host is up, a host marked down for refusing a new connection (1040: the server "
    "is full) has its idle connections closed and every connection returned to it retired: the pool throws "
    "away the only working connections it has and dials the full server again, against hosts.py's rule that "
    "the pool's bookkeeping never refuses what the servers would give",
)
def test_with_no_host_up_working_connections_are_kept(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted(max_size=4)
    servers.down.update({B, C})  # the replicas are away
    held, idle = pool.getconn(), pool.getconn()
    pool.putconn(idle)
    servers.down.add(A)  # the primary is full: 1040 for new connections, open ones unharmed
    assert pool.getconn() is idle
    with pytest.raises(HostDown):
        pool.getconn()  # a connect: every server refuses
    assert states(pool) == {A: DOWN, B: DOWN, C: DOWN}
    pool.putconn(held)
    pool.putconn(idle)
    again = pool.getconn()  # a working connection to a, the only server that answers
    assert host_of(again) == A and not held.closed, "the pool closed its working connections to a full server"
