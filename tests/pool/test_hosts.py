"""The pool over several fake servers: failing over within the deadline, balance, and one server untouched.

The clock is fake and the prober thread sleeps (``quiet_prober``): each test
moves time itself, so every step is deterministic. Marking hosts down,
probes and failback: ``test_hosts_probe.py``.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from django_mysql_pooled.pool.hosts import BALANCE, DOWN, UP, HostSet
from tests.pool.fake_connections import FakeClock, FakeFactory, closing, start
from tests.pool.fake_hosts import A, B, C, FakeHosts, HostDown, NotTheHost, host_of, host_stat, states

# -- failing over ----------------------------------------------------------------------


def test_a_refused_host_moves_the_checkout_to_the_next_within_its_share_of_the_deadline(
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted(max_size=4, timeout=30.0)
    servers.down.add(A)
    servers.on_dial = lambda label, timeout: clock.advance(6.0 if label == A else 0.0)
    conn = pool.getconn()
    assert host_of(conn) == B
    assert servers.dials == [(A, 10.0), (B, 12.0)]  # 30 s over 3 hosts; then what is left over 2
    stats = pool.get_stats()
    assert (stats["failovers"], stats["connections_errors"], stats["connections_num"]) == (1, 0, 1)
    a = pool.get_host_stats()[A]
    assert (a["state"], a["host_up"], a["connections_errors"], a["failovers"], a["host_marked_down"]) == (
        DOWN,
        0,
        1,
        1,
        1,
    )
    assert a["reason"] == f"(2003) Can't connect to server on {A}"
    assert a["host_retry_in_ms"] == 1000
    assert pool.get_host_stats()[B]["pool_size"] == 1
    pool.getconn()  # a is down: b first now, no time lost on a
    assert [label for label, _ in servers.dials] == [A, B, B]
    assert pool.get_stats()["failovers"] == 1


def test_past_the_deadline_each_host_left_still_gets_one_short_try(
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted(timeout=5.0)
    servers.down.update({A, B})
    servers.on_dial = lambda label, timeout: clock.advance(5.0 if label == A else 0.0)
    conn = pool.getconn()
    assert host_of(conn) == C
    assert servers.dials == [(A, 5.0 / 3), (B, 0.0), (C, 0.0)]  # a took the whole deadline
    assert pool.get_stats()["failovers"] == 1


def test_a_checkout_that_does_not_queue_still_fails_over(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted()
    servers.down.add(A)
    assert host_of(pool.getconn(timeout=0)) == B
    assert servers.dials == [(A, 0.0), (B, 0.0)]
    servers.down.update({B, C})
    with pytest.raises(HostDown, match="a:3306"):  # every host refused: the last tried (a, down) answers
        pool.getconn(timeout=0)
    stats = pool.get_stats()
    assert (stats["pool_size"], stats["connections_errors"], stats["requests_errors"]) == (1, 1, 1)


def test_an_error_that_is_not_the_hosts_is_raised_at_once(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted()
    servers.host_failures[A] = [NotTheHost("(1045) Access denied for user 'app'")]
    with pytest.raises(NotTheHost, match="Access denied"):
        pool.getconn()
    assert [label for label, _ in servers.dials] == [A]
    assert states(pool) == {A: UP, B: UP, C: UP}
    assert pool.get_stats()["connections_errors"] == 1
    assert host_of(pool.getconn()) == A


def test_when_every_host_is_down_a_checkout_still_tries_them_all(
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted(timeout=30.0)
    servers.down.update({A, B, C})
    with pytest.raises(HostDown, match="c:3306"):
        pool.getconn()
    assert states(pool) == {A: DOWN, B: DOWN, C: DOWN}
    assert pool.hosts is not None
    a, b, c = pool.hosts.hosts
    a.down_until, b.down_until, c.down_until = 1003.0, 1001.0, 1002.0
    servers.dials.clear()
    servers.bring_up(A)
    conn = pool.getconn()  # no probe has run: the checkout found a itself
    assert host_of(conn) == A
    assert [label for label, _ in servers.dials] == [B, C, A]  # the order their backoffs end
    assert states(pool) == {A: UP, B: DOWN, C: DOWN}


def test_balance_spreads_new_connections_over_the_up_hosts(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted(policy=BALANCE, max_size=9)
    conns = [pool.getconn() for _ in range(6)]
    assert [host_of(conn) for conn in conns] == [A, B, C, A, B, C]
    pool.connection_failed(conns[1], HostDown("gone"))
    pool.putconn(conns[1], broken=True)
    servers.down.add(B)
    more = [pool.getconn() for _ in range(3)]
    assert [host_of(conn) for conn in more] == [A, C, A]  # b is down; ties go to the earlier host
    assert {label: host_stat(pool, label, "pool_size") for label in (A, B, C)} == {A: 4, B: 1, C: 3}
    pool.putconn(conns[0])
    assert not conns[0].closed  # balance never retires


def test_per_host_failovers_count_only_moves_to_another_host(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted()
    servers.down.update({A, B, C})
    with pytest.raises(HostDown):
        pool.getconn()
    per_host = pool.get_host_stats()
    assert [per_host[label]["failovers"] for label in (A, B, C)] == [1, 1, 0]
    assert [per_host[label]["connections_errors"] for label in (A, B, C)] == [1, 1, 1]


def test_close_leaves_only_the_checked_out_connections_counted_on_their_host(hosted: Any) -> None:
    pool = hosted()
    held = pool.getconn()
    pool.putconn(pool.getconn())
    pool.close()
    assert not held.closed
    assert pool.get_stats()["pool_size"] == 1
    assert pool.get_host_stats()[A]["pool_size"] == 1
    pool.putconn(held)
    assert held.closed and pool.get_host_stats()[A]["pool_size"] == 0


# -- one server: none of the above runs ---------------------------------------------------

#: A one-server pool's statistics before multi-host support (the three host counters are
#: "late": they appear only in a pool with several hosts, at their first count).
SINGLE_HOST_KEYS = {
    "checks_failed", "checks_fast", "checks_ping", "closes_broken", "closes_idle", "closes_lifetime",
    "connections_errors", "connections_in_use", "connections_lost", "connections_ms", "connections_num",
    "leaks_detected", "pool_available", "pool_max", "pool_min", "pool_size", "requests_errors",
    "requests_longest_wait_ms", "requests_num", "requests_queued", "requests_rejected", "requests_timeouts",
    "requests_wait_ms", "requests_waiting", "resets_change_user", "resets_failed", "resets_ms", "resets_num",
    "resets_reconnect", "resets_reset_connection", "returns_bad", "returns_reclaimed", "returns_rolled_back",
    "usage_ms",
}  # fmt: skip


def test_a_single_host_pool_never_runs_host_code(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    def trap(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("host code ran in a single-host pool")

    for name in ("candidates", "mark_down", "mark_up", "due_probes", "retire", "state_of"):
        monkeypatch.setattr(HostSet, name, trap)

    factory = FakeFactory(clock)
    with closing(factory.pool(max_size=2, reset_on="checkin", alive=factory.alive, check=factory.ping)) as pool:
        start(pool)
        conn = pool.getconn()
        assert pool.connection_failed(conn, HostDown("gone")) is False
        assert pool.host_of(conn) is None
        pool.putconn(conn)
        conn.dead = True
        clock.advance(10.0)
        assert pool.getconn() is not conn  # a failed check: discarded, replaced
        pool.probe_hosts()
        assert pool.hosts is None and pool.get_host_stats() == {}
        assert set(pool.get_stats()) == SINGLE_HOST_KEYS
        probers = [t for t in threading.enumerate() if t.name == "django_mysql_pooled-fake-probe"]
        assert probers == []
    assert factory.violations == []
