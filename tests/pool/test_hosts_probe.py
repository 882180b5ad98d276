"""The pool over several fake servers: hosts marked down and their idle connections closed, probes, failback.

The clock is fake and the prober thread sleeps (``quiet_prober``): each test
probes itself (``probe_hosts()``), so every step is deterministic.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from django_mysql_pooled.pool.hosts import DOWN, PROBING, UP
from tests.pool.fake_connections import FakeClock, FakeConnection, Worker, closing, wait_until
from tests.pool.fake_hosts import A, B, C, FakeHosts, HostDown, NotTheHost, host_of, host_stat, quiet_prober, states


def test_a_failed_reset_only_suspects_its_host_the_connect_that_follows_finds_it_down(
    hosted: Any, servers: FakeHosts
) -> None:
    pool = hosted(max_size=4)
    on_a = [pool.getconn() for _ in range(3)]
    on_b_later = on_a.pop()
    pool.putconn(on_b_later)
    for conn in on_a:
        pool.putconn(conn)
    servers.take_down(A)
    conn = pool.getconn()  # each idle one fails its reset in turn, then a (still up) refuses the connect
    assert host_of(conn) == B
    assert on_b_later.closed and all(old.closed for old in on_a)
    stats = pool.get_stats()
    assert (stats["resets_failed"], stats["closes_broken"], stats.get("closes_host_down", 0)) == (3, 3, 0)
    assert (stats["pool_size"], stats["failovers"]) == (1, 1)
    assert states(pool)[A] == DOWN
    assert host_stat(pool, A, "reason") == f"(2003) Can't connect to server on {A}"
    assert servers.open_on(A) == set()


def test_a_failed_reset_on_a_healthy_host_costs_that_connection_and_one_probe(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted(max_size=4)
    lost, kept = pool.getconn(), pool.getconn()
    pool.putconn(kept)
    pool.putconn(lost)
    lost.dead = True  # one session killed by an administrator: the server is fine
    assert pool.getconn() is kept
    assert states(pool)[A] == UP
    dials = len(servers.dials)
    pool.probe_hosts()  # no backoff: a suspected host is probed at the next round
    assert servers.dials[dials:] == [(A, 5.0)]
    assert states(pool)[A] == UP and host_stat(pool, A, "host_marked_down") == 0
    assert pool.get_stats().get("closes_host_down", 0) == 0
    assert host_stat(pool, A, "pool_available") == 1  # the probe's connection is kept
    pool.probe_hosts()
    assert len(servers.dials) == dials + 1  # probed once per error


def test_a_failed_check_suspects_its_host(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted(reset_on="checkin", alive=servers.alive, check=servers.ping, validation_window=0.0)
    conn = pool.getconn()
    pool.putconn(conn)
    servers.take_down(A)
    assert host_of(pool.getconn()) == B  # the ping failed, a refused the connect
    assert servers.pings_failed == 1
    assert states(pool)[A] == DOWN


def test_a_statement_error_of_the_host_has_it_probed_and_down_only_if_the_probe_fails(
    hosted: Any, servers: FakeHosts
) -> None:
    pool = hosted()
    busy, idle = pool.getconn(), pool.getconn()
    pool.putconn(idle)
    assert pool.connection_failed(busy, NotTheHost("(1064) syntax error")) is False
    assert pool.host_of(busy) == A
    assert pool.connection_failed(busy, HostDown("(1047) WSREP has not yet prepared node")) is True
    assert states(pool)[A] == UP and not idle.closed  # suspected only
    pool.putconn(busy, broken=True)
    assert busy.closed
    servers.down.add(A)  # the node really is not ready: the probe fails
    pool.probe_hosts()
    assert states(pool)[A] == DOWN
    assert idle.closed
    assert pool.get_stats()["closes_host_down"] == 1
    assert host_stat(pool, A, "connections_errors") == 1
    assert pool.host_of(FakeConnection(99, 0.0, threading.current_thread())) is None


def test_a_connection_held_while_its_host_went_down_is_closed_at_checkin(hosted: Any, servers: FakeHosts) -> None:
    pool = hosted()
    held = pool.getconn()
    servers.down.add(A)  # refuses new connections; the open one still answers
    assert host_of(pool.getconn()) == B
    assert states(pool)[A] == DOWN
    pool.putconn(held)
    assert held.closed
    assert pool.get_stats()["closes_host_down"] == 1
    assert host_of(pool.getconn()) == B


def test_the_probe_waits_for_the_backoff_doubles_it_on_failure_and_brings_the_host_back(
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted(timeout=30.0)
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
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted(max_size=4)
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


def probed_up(pool: Any) -> bool:
    pool.probe_hosts()
    return bool(states(pool)[A] == UP)


def test_a_retired_connection_frees_its_slot_for_a_waiter_who_opens_on_the_earlier_host(no_jitter: None) -> None:
    real = FakeHosts([A, B], clock=time.monotonic)
    with quiet_prober(), closing(real.pool(max_size=1, timeout=30.0, backoff=0.0)) as pool:
        real.down.add(A)
        held = pool.getconn()
        real.bring_up(A)
        wait_until(lambda: probed_up(pool), what="a's probe (after its 0.1 s backoff)")  # the pool is full:
        # the probe's connection is closed
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


def test_a_probe_connection_is_not_added_beyond_max_size(hosted: Any, servers: FakeHosts, clock: FakeClock) -> None:
    pool = hosted(max_size=2)
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
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
    pool = hosted()
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


def test_a_failed_probe_with_no_other_host_up_keeps_the_idle_connection_a_checkout_opened_meanwhile(
    hosted: Any, servers: FakeHosts, clock: FakeClock
) -> None:
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
            servers.take_down(B)
            conn = pool.getconn()  # b's idle one is dead, b and c refuse, a answers: up by this checkout
            assert host_of(conn) == A
            pool.putconn(conn)
            servers.host_failures[A] = [HostDown("(2013) lost connection during the probe")]

    servers.on_dial = meanwhile
    pool.probe_hosts()
    assert states(pool)[A] == DOWN
    # No other host is up: what works is kept (HOST-19b); its next checkout validates it.
    assert host_stat(pool, A, "pool_available") == 1
    assert len(servers.open_on(A)) == 1


def test_a_retired_connection_is_closed_without_a_reset(hosted: Any, servers: FakeHosts, clock: FakeClock) -> None:
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
    assert pool.get_stats().get("closes_host_down", 0) == 0
