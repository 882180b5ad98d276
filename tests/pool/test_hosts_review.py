"""Review of the multi-host core: reproductions of its bugs, on fake servers (strict xfails).

Each test states what the pool should do and fails today; the reason names
the finding (HOST-n, as in the review report). When a fix lands the test
passes, ``strict`` turns that into a failure, and the marker goes.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_mysql_pooled.pool.hosts import DOWN, FAILOVER, UP, HostSet
from django_mysql_pooled.pool.pool import ConnectionPool
from tests.pool.fake_connections import FakeClock, FakeConnection
from tests.pool.fake_hosts import A, B, C, FakeHosts, HostDown, host_of

Pool = ConnectionPool[FakeConnection]

HOST_1 = (
    "HOST-1: a connection checked out when its host was marked down is kept at checkin (reset or not) "
    "and handed out again while another host is up; only idle ones are closed"
)
HOST_2 = "HOST-2: close() leaves each host's open count at what was idle (forget_after_fork() too)"
HOST_3 = "HOST-3: a failed probe marks its host down without closing the idle connections a checkout opened meanwhile"
HOST_4 = "HOST-4: a failed connect to the last host tried counts as a failover from it, with nowhere to go"
HOST_5 = "HOST-5: a checkout with timeout=0 (do not queue) never tries a second host"
HOST_6 = "HOST-6: a probe connects while the pool is full: max_size + 1 connections open for a moment"
HOST_8 = "HOST-8: a returned connection that failback retires is reset first, a round trip for nothing"


def state(pool: Pool, label: str) -> object:
    return pool.get_host_stats()[label]["state"]


@pytest.mark.xfail(strict=True, reason=HOST_1)
@pytest.mark.parametrize("reset_on", ["checkout", "checkin"])
def test_a_connection_held_when_its_host_went_down_is_not_handed_out_again(hosted: Any, reset_on: str) -> None:
    pool = hosted(reset_on=reset_on)
    held, other = pool.getconn(), pool.getconn()  # both on a
    # a 1047 (Galera node desynced) or 1290 (primary demoted, require_primary) on one statement
    assert pool.connection_failed(other, HostDown("(1290) --read-only")) is True
    pool.putconn(other, broken=True)
    assert state(pool, A) == DOWN
    pool.putconn(held)  # its server still answers: the reset (now or at checkout) succeeds
    again = pool.getconn()
    assert host_of(again) != A, f"{again!r} to {A}, marked down, handed out while {B} is up"


@pytest.mark.xfail(strict=True, reason=HOST_2)
def test_close_leaves_no_open_connection_counted_on_a_host(hosted: Any) -> None:
    pool = hosted()
    held = pool.getconn()
    pool.putconn(pool.getconn())
    pool.close()
    assert not held.closed
    assert pool.get_stats()["pool_size"] == 1  # the one still checked out
    assert pool.get_host_stats()[A]["pool_size"] == 1


@pytest.mark.xfail(strict=True, reason=HOST_3)
def test_a_failed_probe_closes_the_hosts_idle_connections(hosted: Any, servers: FakeHosts, clock: FakeClock) -> None:
    pool = hosted()
    servers.down.add(A)
    pool.putconn(pool.getconn())  # a marked down; the connection is on b
    clock.advance(2.0)
    servers.bring_up(A)
    nested: list[str] = []

    def meanwhile(label: str, timeout: float) -> None:
        if label == A and not nested:  # the probe of a: a checkout connects to a meanwhile...
            nested.append(label)
            servers.down.update({B, C})
            assert pool.connection_failed(pool.getconn(), HostDown("b went away")) is True  # ...b marked down
            conn = pool.getconn()  # c refused; a answers: marked up by this checkout
            assert host_of(conn) == A
            pool.putconn(conn)
            servers.host_failures[A] = [HostDown("(2013) lost connection during the probe")]

    servers.on_dial = meanwhile
    pool.probe_hosts()
    assert state(pool, A) == DOWN
    assert pool.get_host_stats()[A]["pool_available"] == 0, "a host marked down keeps an idle connection"


@pytest.mark.xfail(strict=True, reason=HOST_4)
def test_per_host_failovers_count_only_moves_to_another_host(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted()
    servers.down.update({A, B, C})
    with pytest.raises(HostDown):
        pool.getconn()
    per_host = pool.get_host_stats()
    assert [per_host[label]["failovers"] for label in (A, B, C)] == [1, 1, 0]


@pytest.mark.xfail(strict=True, reason=HOST_5)
def test_a_checkout_that_does_not_queue_still_fails_over(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted()
    servers.down.add(A)
    assert host_of(pool.getconn(timeout=0)) == B


@pytest.mark.xfail(strict=True, reason=HOST_6)
def test_a_probe_never_opens_a_connection_beyond_max_size(hosted: Any, servers: FakeHosts, clock: FakeClock) -> None:
    pool = hosted(max_size=2)
    servers.down.add(A)
    held = [pool.getconn(), pool.getconn()]
    servers.bring_up(A)
    clock.advance(2.0)
    pool.probe_hosts()
    assert state(pool, A) == UP
    for conn in held:
        pool.putconn(conn)
    assert servers.peak_open <= 2


@pytest.mark.xfail(strict=True, reason=HOST_8)
def test_a_retired_connection_is_not_reset_before_it_is_closed(
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted(reset_on="checkin", alive=servers.alive, check=servers.ping)
    servers.down.add(A)
    conn = pool.getconn()
    servers.bring_up(A)
    clock.advance(2.0)
    pool.probe_hosts()
    resets = servers.resets_ok
    pool.putconn(conn)
    assert conn.closed and pool.get_stats()["closes_failback"] == 1
    assert servers.resets_ok == resets


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
