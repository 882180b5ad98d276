"""Several hosts behind one pool: HostSet's rules, then the pool on fake servers (no database, no Django).

The clock is fake and the prober thread sleeps (:func:`quiet_prober`): each
test moves time and probes itself, so every step is deterministic.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_mysql_pooled.pool.hosts import BALANCE, DOWN, FAILOVER, PROBING, UP, HostSet
from django_mysql_pooled.pool.pool import ConnectionPool
from tests.pool.fake_connections import FakeClock, FakeConnection, FakeFactory, Worker, closing, start, wait_until
from tests.pool.fake_hosts import FakeHosts, HostDown, NotTheHost, host_of, quiet_prober

Pool = ConnectionPool[FakeConnection]
A, B, C = "a:3306", "b:3306", "c:3306"


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``random.random()`` is 0.5: a backoff is exactly its nominal length."""
    monkeypatch.setattr(random, "random", lambda: 0.5)  # what pool/hosts.py draws its jitter from


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def servers(clock: FakeClock) -> Iterator[FakeHosts]:
    fake = FakeHosts([A, B, C], clock)
    yield fake
    assert fake.violations == []


@pytest.fixture
def make(servers: FakeHosts, no_jitter: None) -> Iterator[Any]:
    """Build opened pools over a, b, c (prober asleep); all closed afterwards."""
    made: list[Pool] = []

    def build(**options: Any) -> Pool:
        with quiet_prober():
            pool = servers.pool(**options)
            made.append(pool)
            start(pool)
        return pool

    yield build
    for pool in made:
        pool.close()


def states(pool: Pool) -> dict[str, object]:
    return {label: values["state"] for label, values in pool.get_host_stats().items()}


def host_stat(pool: Pool, label: str, key: str) -> object:
    return pool.get_host_stats()[label][key]


def down_set(*labels: str, policy: str = FAILOVER, backoff: float = 1.0, backoff_max: float = 30.0) -> HostSet:
    return HostSet(list(labels), policy=policy, backoff=backoff, backoff_max=backoff_max)


# -- HostSet -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "policy", "message"),
    [
        ([A, B], "roundrobin", "policy must be one of ('failover', 'balance'), got 'roundrobin'"),
        ([A], FAILOVER, "need two or more distinct hosts, got ['a:3306']"),
        ([A, A], FAILOVER, "need two or more distinct hosts, got ['a:3306', 'a:3306']"),
    ],
)
def test_hostset_refuses_what_cannot_fail_over(labels: list[str], policy: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        HostSet(labels, policy=policy, backoff=1.0, backoff_max=2.0)


def test_failover_candidates_are_the_configured_order_then_the_down_ones_by_probe_time(no_jitter: None) -> None:
    hosts = down_set(A, B, C)
    a, b, c = hosts.hosts
    assert hosts.candidates() == [a, b, c]
    hosts.mark_down(b, 100.0, "refused")
    hosts.mark_down(a, 100.5, "refused")
    assert hosts.candidates() == [c, b, a]  # b's backoff ends first
    hosts.mark_down(b, 101.0, "refused again")  # 2 s from 101: now after a's
    assert hosts.candidates() == [c, a, b]
    hosts.mark_up(a)
    assert hosts.candidates() == [a, c, b]


def test_balance_candidates_are_the_fewest_open_first_ties_in_order() -> None:
    hosts = down_set(A, B, C, policy=BALANCE)
    a, b, c = hosts.hosts
    assert hosts.candidates() == [a, b, c]
    a.open, b.open, c.open = 2, 1, 1
    assert hosts.candidates() == [b, c, a]
    hosts.mark_down(b, 0.0, "refused")
    assert hosts.candidates() == [c, a, b]  # a down host last, whatever its count


def test_backoff_doubles_per_failure_up_to_the_cap_and_starts_over_once_up(no_jitter: None) -> None:
    hosts = down_set(A, B, backoff=0.5, backoff_max=3.0)
    a = hosts.hosts[0]
    seen: list[tuple[float, float]] = []
    for _ in range(5):
        assert hosts.mark_down(a, 10.0, "refused") is (not seen)  # only the first one was a change
        seen.append((a.backoff, a.down_until))
    assert seen == [(0.5, 10.5), (1.0, 11.0), (2.0, 12.0), (3.0, 13.0), (3.0, 13.0)]
    assert (a.state, a.reason, a.marked_down) == (DOWN, "refused", 1)
    assert hosts.mark_up(a) is True
    assert hosts.mark_up(a) is False
    assert (a.state, a.reason, a.backoff, a.down_until) == (UP, "", 0.0, 0.0)
    hosts.mark_down(a, 20.0, "refused")
    assert (a.backoff, a.down_until, a.marked_down) == (0.5, 20.5, 2)


def test_a_cap_below_the_backoff_is_the_backoff(no_jitter: None) -> None:
    hosts = down_set(A, B, backoff=5.0, backoff_max=1.0)
    a = hosts.hosts[0]
    hosts.mark_down(a, 0.0, "x")
    hosts.mark_down(a, 0.0, "x")
    assert a.backoff == 5.0


@given(draw=st.floats(0.0, 1.0, exclude_max=True), failures=st.integers(1, 8))
def test_jitter_stays_within_a_quarter_of_the_backoff(draw: float, failures: int) -> None:
    hosts = down_set(A, B, backoff=1.0, backoff_max=16.0)
    a = hosts.hosts[0]
    saved = random.random
    random.random = lambda: draw  # hosts.py draws from the random module
    try:
        for _ in range(failures):
            hosts.mark_down(a, 100.0, "x")
    finally:
        random.random = saved
    nominal = min(2.0 ** (failures - 1), 16.0)
    assert a.backoff == nominal
    assert 100.0 + 0.75 * nominal <= a.down_until <= 100.0 + 1.25 * nominal
    assert a.down_until == pytest.approx(100.0 + nominal * (1 + 0.25 * (2 * draw - 1)))


def test_due_probes_are_the_down_hosts_whose_backoff_ended_marked_probing(no_jitter: None) -> None:
    hosts = down_set(A, B, C, backoff=2.0)
    a, b, c = hosts.hosts
    hosts.mark_down(a, 0.0, "x")
    hosts.mark_down(b, 1.0, "x")
    assert hosts.due_probes(1.999) == []
    assert hosts.state_of(a, 1.5) == (DOWN, 0.5)
    assert hosts.due_probes(2.0) == [a]
    assert (a.state, b.state, c.state) == (PROBING, DOWN, UP)
    assert hosts.state_of(a, 2.5) == (PROBING, 0.0)  # no retry time while its probe runs
    assert hosts.due_probes(10.0) == [b]  # a is being probed: not handed out twice
    assert hosts.state_of(c, 10.0) == (UP, 0.0)


def test_retire_moves_back_to_an_earlier_host_with_failover_only() -> None:
    hosts = down_set(A, B, C)
    a, b, c = hosts.hosts
    assert [hosts.retire(h) for h in (a, b, c)] == [False, True, True]  # a is up: b and c retire
    hosts.mark_down(a, 0.0, "x")
    assert [hosts.retire(h) for h in (a, b, c)] == [False, False, True]
    hosts.mark_down(b, 0.0, "x")
    assert [hosts.retire(h) for h in (a, b, c)] == [False, False, False]
    hosts.due_probes(100.0)  # probing is not up
    assert hosts.retire(c) is False
    balanced = down_set(A, B, policy=BALANCE)
    assert [balanced.retire(h) for h in balanced.hosts] == [False, False]


# -- failing over ----------------------------------------------------------------------


def test_a_refused_host_moves_the_checkout_to_the_next_within_its_share_of_the_deadline(
    make: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = make(max_size=4, timeout=30.0)
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


def test_the_last_host_is_not_tried_once_the_deadline_has_passed(
    make: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = make(timeout=5.0)
    servers.down.add(A)
    servers.on_dial = lambda label, timeout: clock.advance(5.0)
    with pytest.raises(HostDown, match="a:3306"):
        pool.getconn()
    assert [label for label, _ in servers.dials] == [A]
    stats = pool.get_stats()
    assert (stats["pool_size"], stats["connections_errors"], stats["requests_errors"]) == (0, 1, 1)


def test_an_error_that_is_not_the_hosts_is_raised_at_once(make: Any, servers: FakeHosts) -> None:
    pool = make()
    servers.host_failures[A] = [NotTheHost("(1045) Access denied for user 'app'")]
    with pytest.raises(NotTheHost, match="Access denied"):
        pool.getconn()
    assert [label for label, _ in servers.dials] == [A]
    assert states(pool) == {A: UP, B: UP, C: UP}
    assert pool.get_stats()["connections_errors"] == 1
    assert host_of(pool.getconn()) == A


def test_when_every_host_is_down_a_checkout_still_tries_them_all(
    make: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = make(timeout=30.0)
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


# -- marking down, probing, failing back --------------------------------------------------


def test_a_failed_reset_marks_its_host_down_and_closes_the_hosts_idle_connections_at_once(
    make: Any, servers: FakeHosts
) -> None:
    pool = make(max_size=4)
    on_a = [pool.getconn() for _ in range(3)]
    for conn in on_a:
        pool.putconn(conn)
    servers.take_down(A)
    conn = pool.getconn()  # the most recent idle one: its reset fails
    assert host_of(conn) == B
    assert all(old.closed for old in on_a)
    stats = pool.get_stats()
    assert (stats["resets_failed"], stats["closes_broken"], stats["closes_host_down"]) == (1, 1, 2)
    assert stats["pool_size"] == 1
    assert states(pool)[A] == DOWN
    assert servers.open_on(A) == set()
    assert host_stat(pool, A, "pool_size") == 0


def test_a_failed_check_marks_its_host_down(make: Any, servers: FakeHosts) -> None:
    pool = make(reset_on="checkin", alive=servers.alive, check=servers.ping, validation_window=0.0)
    conn = pool.getconn()
    pool.putconn(conn)
    servers.take_down(A)
    assert host_of(pool.getconn()) == B
    assert servers.pings_failed == 1
    assert states(pool)[A] == DOWN


def test_a_statement_error_of_the_host_marks_it_down_and_closes_its_idle_connections(make: Any) -> None:
    pool = make()
    busy, idle = pool.getconn(), pool.getconn()
    pool.putconn(idle)
    assert pool.connection_failed(busy, NotTheHost("(1064) syntax error")) is False
    assert states(pool)[A] == UP and not idle.closed
    assert pool.host_of(busy) == A
    assert pool.connection_failed(busy, HostDown("(1047) WSREP has not yet prepared node")) is True
    assert states(pool)[A] == DOWN
    assert idle.closed and not busy.closed
    assert pool.get_stats()["closes_host_down"] == 1
    pool.putconn(busy, broken=True)
    assert busy.closed
    assert pool.connection_failed(pool.getconn(), HostDown("x")) is True  # on b now
    assert states(pool)[B] == DOWN
    assert pool.host_of(FakeConnection(99, 0.0, threading.current_thread())) is None


def test_the_probe_waits_for_the_backoff_doubles_it_on_failure_and_brings_the_host_back(
    make: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = make(timeout=30.0)
    servers.down.add(A)
    pool.getconn()
    servers.dials.clear()
    pool.probe_hosts()
    assert servers.dials == []  # backoff (1 s) not over
    clock.advance(1.0)
    pool.probe_hosts()
    assert servers.dials == [(A, 5.0)]  # a probe's connect is bounded by PROBE_TIMEOUT
    assert (host_stat(pool, A, "state"), host_stat(pool, A, "host_retry_in_ms")) == (DOWN, 2000)
    assert host_stat(pool, A, "connections_errors") == 2
    servers.bring_up(A)
    seen: list[object] = []
    servers.on_dial = lambda label, timeout: seen.append(host_stat(pool, label, "state"))
    clock.advance(1.5)
    pool.probe_hosts()
    assert seen == []
    clock.advance(0.5)
    pool.probe_hosts()
    assert seen == [PROBING]
    assert states(pool)[A] == UP
    stats = pool.get_stats()
    assert (stats["pool_size"], stats["pool_available"], stats["connections_num"]) == (2, 1, 2)
    assert host_stat(pool, A, "pool_available") == 1  # the probe's connection serves the next checkout
    assert host_of(pool.getconn()) == A


def test_failback_retires_the_later_hosts_connections_one_checkin_at_a_time(
    make: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = make(max_size=4)
    servers.down.add(A)
    on_b = [pool.getconn() for _ in range(3)]
    assert {host_of(conn) for conn in on_b} == {B}
    servers.bring_up(A)
    clock.advance(2.0)
    pool.probe_hosts()
    pool.putconn(on_b[0])  # a is up again: closed instead of kept
    assert on_b[0].closed
    assert not on_b[1].closed and not on_b[2].closed
    stats = pool.get_stats()
    assert (stats["closes_failback"], stats["closes_lifetime"], stats["pool_size"]) == (1, 0, 3)
    pool.putconn(on_b[1])
    assert on_b[1].closed and not on_b[2].closed
    assert pool.get_stats()["closes_failback"] == 2
    assert host_of(pool.getconn()) == A
    assert (host_stat(pool, A, "pool_size"), host_stat(pool, B, "pool_size")) == (1, 1)


def test_a_retired_connection_frees_its_slot_for_a_waiter_who_opens_on_the_earlier_host(no_jitter: None) -> None:
    real = FakeHosts([A, B], clock=time.monotonic)
    with quiet_prober(), closing(real.pool(max_size=1, timeout=30.0, backoff=0.0)) as pool:
        real.down.add(A)
        held = pool.getconn()
        real.bring_up(A)
        pool.probe_hosts()  # a is up; the pool is full, so the probe's connection is closed
        assert pool.get_stats()["pool_size"] == 1
        waiter = Worker(pool.getconn)
        waiter.start()
        wait_until(lambda: pool.get_stats()["requests_waiting"] == 1, what="a waiter")
        pool.putconn(held)
        conn = waiter.outcome()
        assert held.closed
        assert host_of(conn) == A
        assert conn.opened_in is waiter  # the slot, not the connection, was handed over
        assert pool.get_stats()["closes_failback"] == 1
        pool.putconn(conn)
    assert real.violations == []


def test_balance_spreads_new_connections_over_the_up_hosts(make: Any, servers: FakeHosts) -> None:
    pool = make(policy=BALANCE, max_size=9)
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


def test_a_probe_connection_is_not_added_beyond_max_size(make: Any, servers: FakeHosts, clock: FakeClock) -> None:
    pool = make(max_size=2)
    servers.down.add(A)
    held = [pool.getconn(), pool.getconn()]
    servers.bring_up(A)
    clock.advance(2.0)
    pool.probe_hosts()
    assert states(pool)[A] == UP
    assert pool.get_stats()["pool_size"] == 2
    assert len(servers.open) == 2
    assert host_stat(pool, A, "pool_size") == 0
    for conn in held:
        pool.putconn(conn)


def test_a_probe_that_connects_while_the_pool_closes_closes_its_connection(
    make: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = make()
    servers.down.add(A)
    pool.putconn(pool.getconn())
    servers.bring_up(A)
    clock.advance(2.0)
    servers.on_dial = lambda label, timeout: pool.close()
    pool.probe_hosts()
    assert servers.open == set()
    assert pool.get_stats()["pool_size"] == 0
    servers.on_dial = None
    with pool._lock:
        assert pool.hosts is not None
        pool.hosts.mark_down(pool.hosts.hosts[0], clock(), "x")
    clock.advance(100.0)
    dials = len(servers.dials)
    pool.probe_hosts()  # a closed pool probes nothing
    assert len(servers.dials) == dials


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
