"""The pool core against a fake connection factory: no database, no Django.

Timing is on an injected fake clock wherever the pool allows it; the few
tests that need real waiting (a thread blocked on a checkout) use generous
tolerances and synchronise on the pool's own statistics.
"""

from __future__ import annotations

import functools
import gc
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from django_mysql_pooled.pool import checkout as checkout_module
from django_mysql_pooled.pool.errors import PoolClosed, PoolError, PoolTimeout, TooManyRequests
from django_mysql_pooled.pool.pool import LIFETIME_JITTER, ConnectionPool
from django_mysql_pooled.pool.state import Waiter
from tests.pool.fake_connections import (
    ConnectError,
    ConnectionLost,
    FakeClock,
    FakeConnection,
    FakeFactory,
    Worker,
    closing,
    start,
    wait_until,
)

Pool = ConnectionPool[FakeConnection]
MakePool = Callable[..., Pool]

STATS_KEYS = {
    "pool_min",
    "pool_max",
    "pool_size",
    "pool_available",
    "connections_in_use",
    "requests_waiting",
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "requests_timeouts",
    "usage_ms",
    "returns_bad",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
    "resets_num",
    "resets_ms",
    "resets_failed",
    "closes_lifetime",
    "closes_idle",
    "closes_broken",
    "leaks_detected",
    "returns_reclaimed",
    "checks_fast",
    "checks_ping",
    "checks_failed",
}


def _pools_on(factory: FakeFactory) -> Iterator[MakePool]:
    """Build pools on *factory*; all closed afterwards."""
    made: list[Pool] = []

    def build(opened: bool = True, **options: Any) -> Pool:
        pool = factory.pool(**options)
        made.append(pool)
        if opened:
            start(pool)  # the worker's first round is over: the test alone drives the pool
        return pool

    yield build
    for pool in made:
        pool.close()


@pytest.fixture
def make(factory: FakeFactory) -> Iterator[MakePool]:
    """Build pools on the fake factory and fake clock; all closed afterwards."""
    yield from _pools_on(factory)


@pytest.fixture
def real_factory() -> Iterator[FakeFactory]:
    fake = FakeFactory()
    yield fake
    assert fake.violations == []


@pytest.fixture
def make_real(real_factory: FakeFactory) -> Iterator[MakePool]:
    """Build pools on the real monotonic clock, for tests where threads really wait."""
    yield from _pools_on(real_factory)


def waiting(pool: Pool, count: int) -> None:
    """Block until *count* checkouts are queued on *pool*."""
    wait_until(lambda: pool.get_stats()["requests_waiting"] == count, what=f"{count} waiting checkouts")


# -- construction ------------------------------------------------------------


@pytest.mark.parametrize(("min_size", "max_size"), [(-1, 2), (3, 2), (0, 0)])
def test_rejects_impossible_sizes(factory: FakeFactory, min_size: int, max_size: int) -> None:
    with pytest.raises(ValueError, match=rf"min_size <= max_size.*got {min_size}, {max_size}"):
        factory.pool(min_size=min_size, max_size=max_size)


def test_repr_shows_live_counts(make: MakePool) -> None:
    pool = make(name="reporting", max_size=3, opened=False)
    assert repr(pool) == "<ConnectionPool 'reporting' new size=0 idle=0 in_use=0 waiting=0>"
    conn = pool.getconn()
    pool.getconn()
    pool.putconn(conn)
    assert repr(pool) == "<ConnectionPool 'reporting' open size=2 idle=1 in_use=1 waiting=0>"
    pool.close()
    assert repr(pool).startswith("<ConnectionPool 'reporting' closed ")


class Interrupt(BaseException):
    """Stands for ``KeyboardInterrupt`` or a green thread's timeout."""


# -- exhaustion, FIFO, handoff ----------------------------------------------------


def test_exhausted_pool_times_out_with_a_message_naming_the_limits(
    make_real: MakePool, real_factory: FakeFactory
) -> None:
    pool = make_real(name="reports", max_size=2, timeout=0.3)
    pool.getconn()
    pool.getconn()
    started = time.monotonic()
    with pytest.raises(PoolTimeout) as excinfo:
        pool.getconn()
    elapsed = time.monotonic() - started
    assert 0.29 <= elapsed < 3.0  # generous: only "it waited, then gave up"
    message = str(excinfo.value)
    assert "'reports'" in message
    assert "timeout=0.3 s" in message
    assert "max_size=2" in message
    assert "in use=2" in message
    assert "idle=0" in message
    assert "waiting=0" in message
    assert "max_size'] or ['timeout']" in message
    assert real_factory.connects == 2
    stats = pool.get_stats()
    assert stats["requests_timeouts"] == 1
    assert stats["requests_errors"] == 1
    assert stats["requests_queued"] == 1
    assert stats["requests_waiting"] == 0


def test_timeout_message_names_the_timeout_of_the_call(make: MakePool) -> None:
    pool = make(name="reports", max_size=1, timeout=30.0)
    pool.getconn()
    with pytest.raises(PoolTimeout, match=r"'reports'.*\(timeout=0 s\)"):
        pool.getconn(timeout=0)


def test_backend_pool_errors_are_the_cores_and_mysqldb_operational_errors() -> None:
    import MySQLdb

    from django_mysql_pooled import errors as public
    from django_mysql_pooled.session.factory import DjangoPool

    pairs = (
        (public.PoolTimeout, PoolTimeout),
        (public.PoolClosed, PoolClosed),
        (public.TooManyRequests, TooManyRequests),
    )
    for backend, core in pairs:
        assert issubclass(backend, core)
        assert issubclass(backend, public.PoolError)
        assert issubclass(backend, PoolError)
        assert issubclass(backend, MySQLdb.OperationalError)
    errors = DjangoPool.errors
    assert (errors.timeout, errors.closed, errors.too_many_requests) == tuple(backend for backend, _ in pairs)


def test_waiters_are_served_in_fifo_order(make_real: MakePool, real_factory: FakeFactory) -> None:
    pool = make_real(max_size=1, timeout=30.0)
    conn = pool.getconn()
    served: list[tuple[int, FakeConnection]] = []

    def checkout(number: int) -> None:
        got = pool.getconn()
        served.append((number, got))
        pool.putconn(got)

    workers = []
    for number in range(6):
        worker = Worker(functools.partial(checkout, number), name=f"waiter-{number}")
        worker.start()
        waiting(pool, number + 1)
        workers.append(worker)
    assert pool.get_stats()["requests_longest_wait_ms"] >= 0
    pool.putconn(conn)
    for worker in workers:
        worker.outcome()
    assert [number for number, _ in served] == list(range(6))
    assert {got for _, got in served} == {conn}
    assert real_factory.connects == 1
    assert pool.get_stats()["requests_queued"] == 6


def test_returned_connection_goes_to_the_first_waiter_not_to_idle(make_real: MakePool) -> None:
    pool = make_real(max_size=1, timeout=30.0)
    conn = pool.getconn()
    worker = Worker(pool.getconn)
    worker.start()
    waiting(pool, 1)
    pool.putconn(conn)
    stats = pool.get_stats()
    assert stats["pool_available"] == 0
    assert stats["requests_waiting"] == 0
    with pytest.raises(PoolTimeout):
        pool.getconn(timeout=0)  # nothing left to steal: it was handed over
    assert worker.outcome() is conn


def test_max_waiting_rejects_at_once(make_real: MakePool) -> None:
    pool = make_real(name="api", max_size=1, max_waiting=2, timeout=30.0)
    conn = pool.getconn()
    workers = [Worker(pool.getconn), Worker(pool.getconn)]
    for count, worker in enumerate(workers, 1):
        worker.start()
        waiting(pool, count)
    started = time.monotonic()
    expected = r"database 'api': too many requests waiting for a connection \(2 waiting, max_waiting=2\)"
    with pytest.raises(TooManyRequests, match=expected):
        pool.getconn()
    assert time.monotonic() - started < 5.0
    stats = pool.get_stats()
    assert stats["requests_rejected"] == 1
    assert stats["requests_errors"] == 1
    pool.putconn(conn)
    first = workers[0].outcome()
    pool.putconn(first)
    assert workers[1].outcome() is conn


def test_requests_wait_ms_counts_time_in_the_queue(make_real: MakePool) -> None:
    pool = make_real(max_size=1, timeout=30.0)
    conn = pool.getconn()
    worker = Worker(pool.getconn)
    worker.start()
    waiting(pool, 1)
    time.sleep(0.3)
    pool.putconn(conn)
    pool.putconn(worker.outcome())
    stats = pool.get_stats()
    assert stats["requests_queued"] == 1
    assert 250 <= stats["requests_wait_ms"] < 5000


def test_zero_timeout_fails_at_once_when_exhausted(make: MakePool, clock: FakeClock) -> None:
    pool = make(max_size=1, timeout=0)
    pool.getconn()
    with pytest.raises(PoolTimeout):
        pool.getconn()
    with pytest.raises(PoolTimeout):
        pool.getconn(timeout=-1)


# -- idle order, opening ----------------------------------------------------------


def test_idle_connections_are_handed_out_most_recent_first(make: MakePool) -> None:
    pool = make(max_size=3)
    a, b, c = pool.getconn(), pool.getconn(), pool.getconn()
    for conn in (a, b, c):
        pool.putconn(conn)
    assert pool.getconn() is c
    assert pool.getconn() is b
    pool.putconn(c)
    assert pool.getconn() is c
    assert pool.getconn() is a


def test_new_connection_is_opened_in_the_calling_thread_with_the_time_left(
    make: MakePool, factory: FakeFactory
) -> None:
    pool = make(max_size=2, timeout=7.5)
    conn = pool.getconn()
    assert conn.opened_in is threading.current_thread()
    assert factory.connect_timeouts == [7.5]
    pool.getconn(timeout=2.0)
    assert factory.connect_timeouts == [7.5, 2.0]
    stats = pool.get_stats()
    assert stats["connections_num"] == 2
    assert stats["pool_size"] == 2


def test_connect_failure_frees_the_slot_and_propagates(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=1)
    factory.connect_failures.append(ConnectError("Access denied for user 'app'"))
    with pytest.raises(ConnectError, match="Access denied"):
        pool.getconn()
    stats = pool.get_stats()
    assert stats["pool_size"] == 0
    assert stats["connections_errors"] == 1
    assert stats["requests_errors"] == 1
    assert stats["requests_num"] == 0
    assert pool.getconn() is factory.made[0]


def test_failed_connect_hands_its_slot_to_a_waiter(make_real: MakePool, real_factory: FakeFactory) -> None:
    pool = make_real(max_size=1, timeout=30.0)
    real_factory.gate = gate = threading.Event()
    real_factory.connect_failures.append(ConnectError("Too many connections"))
    opener = Worker(pool.getconn, name="opener")
    opener.start()
    wait_until(lambda: pool.get_stats()["pool_size"] == 1, what="the opener's reserved slot")
    waiter = Worker(pool.getconn, name="waiter")
    waiter.start()
    waiting(pool, 1)
    gate.set()
    with pytest.raises(ConnectError, match="Too many connections"):
        opener.outcome()
    conn = waiter.outcome()
    assert conn is real_factory.made[0]
    assert conn.opened_in is waiter  # the waiter opened it with the freed slot
    stats = pool.get_stats()
    assert stats["pool_size"] == 1
    assert stats["connections_errors"] == 1


# -- reset -------------------------------------------------------------------------


def test_reused_connection_is_reset_and_a_new_one_is_not(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=2)
    conn = pool.getconn()
    assert conn.resets == 0
    assert pool.was_reused(conn) is False
    pool.putconn(conn)
    assert pool.was_reused(conn) is False  # not checked out
    assert pool.getconn() is conn
    assert conn.resets == 1
    assert pool.was_reused(conn) is True
    stats = pool.get_stats()
    assert stats["resets_num"] == 1
    assert stats["resets_reset_connection"] == 1
    assert stats["resets_failed"] == 0


@pytest.mark.parametrize("method", ["change_user", "reconnect", "ping"])
def test_resets_are_counted_by_method(make: MakePool, factory: FakeFactory, method: str) -> None:
    pool = make(max_size=1)
    factory.reset_method = method
    for _ in range(3):
        pool.putconn(pool.getconn())
    stats = pool.get_stats()
    assert stats[f"resets_{method}"] == 2
    assert stats["resets_num"] == 2


@pytest.mark.parametrize("reset_on", ["checkout", "checkin"])
@pytest.mark.parametrize("method", ["reset_connection", "change_user", "reconnect", "ping"])
def test_resets_are_counted_by_method_at_either_placement(
    make: MakePool, factory: FakeFactory, reset_on: str, method: str
) -> None:
    pool = make(max_size=1, reset_on=reset_on)
    factory.reset_method = method
    for _ in range(3):
        pool.putconn(pool.getconn())
    stats = pool.get_stats()
    resets = 2 if reset_on == "checkout" else 3
    assert (stats[f"resets_{method}"], stats["resets_num"], factory.connects) == (resets, resets, 1)


def test_resets_ms_of_a_reset_at_checkout_leaves_the_wait_out(make: MakePool, clock: FakeClock) -> None:
    pool = make(max_size=1, timeout=60.0)
    pool.putconn(pool.getconn())
    held = pool.getconn()  # reset: instantly, on the fake clock
    waiter = Worker(pool.getconn)
    waiter.start()
    waiting(pool, 1)
    clock.advance(10.0)
    pool.putconn(held)  # handed over, then reset by the waiter
    assert waiter.outcome() is held
    stats = pool.get_stats()
    assert (stats["resets_num"], stats["resets_ms"], stats["requests_wait_ms"]) == (2, 0, 10_000)


@pytest.mark.parametrize("reset_on", ["checkout", "checkin"])
def test_a_reset_returning_an_unknown_method_fails_and_closes_the_connection(
    make: MakePool, factory: FakeFactory, caplog: pytest.LogCaptureFixture, reset_on: str
) -> None:
    pool = make(max_size=1, reset_on=reset_on)
    conn = pool.getconn()
    factory.reset_method = "bogus"
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        pool.putconn(conn)
        again = pool.getconn()  # never the connection whose reset failed
    assert again is not conn and conn.closed
    assert "unknown reset method 'bogus'" in caplog.text
    stats = pool.get_stats()
    assert (stats["resets_failed"], stats["resets_num"], stats["pool_size"], stats["requests_num"]) == (1, 0, 1, 2)


def test_pool_without_reset_reuses_as_is(factory: FakeFactory) -> None:
    pool = ConnectionPool(factory.connect, close=factory.close, clock=factory.clock, maintenance_interval=3600)
    try:
        conn = pool.getconn()
        pool.putconn(conn)
        assert pool.getconn() is conn
        assert conn.resets == 0
        assert pool.was_reused(conn) is True
        assert pool.get_stats()["resets_num"] == 0
    finally:
        pool.close()


def test_failed_reset_discards_and_replaces_within_the_checkout(
    make: MakePool, factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make(name="orders", max_size=1, timeout=0)
    lost = pool.getconn()
    pool.putconn(lost)
    lost.dead = True
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        conn = pool.getconn()  # timeout 0: the replacement comes within the same (empty) deadline
    assert conn is not lost
    assert lost.closed
    assert not conn.dead
    assert [r.getMessage() for r in caplog.records] == [
        "pool 'orders': discarding a connection whose reset failed: "
        "ConnectionLost('<FakeConnection #1>: server has gone away')"
    ]
    stats = pool.get_stats()
    assert stats["resets_failed"] == 1
    assert stats["connections_lost"] == 1
    assert stats["closes_broken"] == 1
    assert stats["resets_num"] == 0
    assert stats["resets_reconnect"] == 1  # the ladder's last rung served this checkout
    assert stats["requests_num"] == 2
    assert stats["pool_size"] == 1
    assert factory.open == {conn}


def test_failed_reset_takes_the_next_idle_connection_first(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=2, timeout=0)
    healthy, lost = pool.getconn(), pool.getconn()
    pool.putconn(healthy)
    pool.putconn(lost)
    lost.dead = True
    assert pool.getconn() is healthy
    assert factory.connects == 2
    assert pool.get_stats()["pool_size"] == 1


def test_failed_reset_keeps_the_waiter_first_in_line(make_real: MakePool, real_factory: FakeFactory) -> None:
    pool = make_real(max_size=1, timeout=30.0)
    lost = pool.getconn()
    lost.dead = True
    served: list[int] = []

    def checkout(number: int) -> None:
        conn = pool.getconn()
        served.append(number)
        pool.putconn(conn)

    first, second = Worker(lambda: checkout(1)), Worker(lambda: checkout(2))
    first.start()
    waiting(pool, 1)
    second.start()
    waiting(pool, 2)
    pool.putconn(lost)  # handed to the first waiter, whose reset fails
    first.outcome()
    second.outcome()
    assert served == [1, 2]
    assert real_factory.made[1].opened_in is first
    assert pool.get_stats()["pool_size"] == 1


def test_interrupted_reset_frees_the_slot_and_propagates(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=1)
    conn = pool.getconn()
    pool.putconn(conn)
    factory.reset_error = Interrupt()
    with pytest.raises(Interrupt):
        pool.getconn()
    assert conn.closed
    assert pool.get_stats()["pool_size"] == 0
    factory.reset_error = None
    assert pool.getconn() is not conn


def test_pool_closed_during_a_failed_reset(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=1)
    conn = pool.getconn()
    pool.putconn(conn)

    def reset(_conn: FakeConnection) -> str:
        pool.close()
        raise ConnectionLost("gone")

    pool._reset = reset
    with pytest.raises(PoolClosed, match="'fake' is closed"):
        pool.getconn()
    assert pool.get_stats()["pool_size"] == 0
    assert factory.open == set()


# -- lifetime, idle expiry, min_size ---------------------------------------------------


@pytest.mark.parametrize(("draw", "lifetime"), [(0.0, 100.0), (0.999999, 100.0 * (1 - LIFETIME_JITTER))])
def test_lifetime_is_jittered_down_by_at_most_five_percent(
    make: MakePool,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    draw: float,
    lifetime: float,
) -> None:
    assert LIFETIME_JITTER == 0.05
    monkeypatch.setattr(random, "random", lambda: draw)
    pool = make(max_size=2, max_lifetime=100.0)
    conn = pool.getconn()
    pool.putconn(conn)
    clock.advance(lifetime - 0.01)
    pool.run_maintenance()
    assert pool.get_stats()["pool_available"] == 1
    clock.advance(0.02)
    pool.run_maintenance()
    assert conn.closed
    stats = pool.get_stats()
    assert stats["closes_lifetime"] == 1
    assert stats["pool_size"] == 0


def test_lifetimes_stay_within_the_jitter_band(make: MakePool, clock: FakeClock) -> None:
    pool = make(max_size=40, max_lifetime=100.0)
    conns = [pool.getconn() for _ in range(40)]
    for conn in conns:
        pool.putconn(conn)
    clock.advance(95.0 - 1e-6)
    pool.run_maintenance()
    assert not any(conn.closed for conn in conns)
    clock.advance(5.0)
    pool.run_maintenance()
    assert all(conn.closed for conn in conns)
    assert pool.get_stats()["closes_lifetime"] == 40


def test_expired_connection_is_not_handed_out(make: MakePool, factory: FakeFactory, clock: FakeClock) -> None:
    pool = make(max_size=1, max_lifetime=100.0, timeout=0)
    old = pool.getconn()
    pool.putconn(old)
    clock.advance(100.0)
    new = pool.getconn()
    assert new is not old
    assert old.closed
    assert old.resets == 0  # expired: closed without a reset
    stats = pool.get_stats()
    assert stats["closes_lifetime"] == 1
    assert stats["pool_size"] == 1


def test_expired_connection_is_closed_when_returned(make: MakePool, clock: FakeClock) -> None:
    pool = make(max_size=1, max_lifetime=100.0)
    conn = pool.getconn()
    clock.advance(100.0)
    pool.putconn(conn)
    assert conn.closed
    stats = pool.get_stats()
    assert (stats["closes_lifetime"], stats["pool_size"]) == (1, 0)


def test_idle_connections_above_min_size_expire(make: MakePool, factory: FakeFactory, clock: FakeClock) -> None:
    pool = make(min_size=1, max_size=4, max_idle=100.0)
    assert factory.connects == 1
    a, b, c = pool.getconn(), pool.getconn(), pool.getconn()
    for conn in (a, b, c):
        pool.putconn(conn)
    clock.advance(50.0)
    pool.putconn(pool.getconn())  # c used again: its idle time restarts
    clock.advance(50.0)
    pool.run_maintenance()
    assert (a.closed, b.closed, c.closed) == (True, True, False)
    stats = pool.get_stats()
    assert stats["closes_idle"] == 2
    assert stats["pool_size"] == 1
    clock.advance(1000.0)
    pool.run_maintenance()  # at min_size: kept however long it idles
    assert not c.closed
    assert pool.get_stats()["closes_idle"] == 2


def test_idle_expiry_counts_lifetime_closes_towards_min_size(
    make: MakePool, factory: FakeFactory, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(random, "random", lambda: 0.0)
    pool = make(min_size=1, max_size=2, max_idle=10.0, max_lifetime=100.0)
    old = pool.getconn()  # opened by the fill at t=0
    clock.advance(50.0)
    young = pool.getconn()  # opened at t=50
    clock.advance(39.0)
    pool.putconn(young)
    clock.advance(1.0)
    pool.putconn(old)
    clock.advance(10.0)  # t=100: old reaches its lifetime, young has idled 11 s
    pool.run_maintenance()
    assert old.closed
    assert not young.closed  # closing it too would leave the pool below min_size
    stats = pool.get_stats()
    assert (stats["closes_lifetime"], stats["closes_idle"]) == (1, 0)
    assert stats["pool_size"] == 1
    assert factory.connects == 2


def test_min_size_is_filled_in_the_background_and_refilled(make: MakePool, factory: FakeFactory) -> None:
    pool = make(min_size=2, max_size=4, opened=False)
    assert factory.connects == 0
    start(pool)
    assert len(factory.open) == 2
    assert all(conn.opened_in.name == "django_mysql_pooled-fake-maintenance" for conn in factory.made)
    assert pool.get_stats()["pool_available"] == 2
    assert factory.connect_timeouts == [30.0, 30.0]
    a, b = pool.getconn(), pool.getconn()
    assert factory.connects == 2
    pool.putconn(a, broken=True)
    pool.putconn(b, broken=True)
    assert pool.get_stats()["pool_size"] == 0
    pool.run_maintenance()
    stats = pool.get_stats()
    assert (stats["pool_size"], stats["pool_available"], stats["connections_num"]) == (2, 2, 4)


def test_fill_backs_off_while_connect_fails_and_starts_over_after(
    make: MakePool, factory: FakeFactory, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make(name="fill", min_size=1, max_size=2)
    attempts = 0

    def lose_one_and_fail() -> None:
        nonlocal attempts
        pool.putconn(pool.getconn(), broken=True)
        factory.always_fail = ConnectError("Can't connect to server")
        pool.run_maintenance()
        attempts = factory.connect_errors
        assert pool.get_stats()["pool_size"] == 0

    def tried_after(seconds: float) -> bool:
        nonlocal attempts
        clock.advance(seconds)
        pool.run_maintenance()
        tried = factory.connect_errors > attempts
        attempts = factory.connect_errors
        return tried

    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        lose_one_and_fail()
        assert "pool 'fill': could not open a connection to keep min_size: Can't connect" in caplog.text
        # Backoff b doubles from 0.1 s up to 10 s; each retry waits b * [0.5, 1].
        for backoff in (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0):
            assert not tried_after(backoff / 2 - 0.001)
            assert tried_after(backoff / 2 + 0.001)
        factory.always_fail = None
        clock.advance(10.0)
        pool.run_maintenance()
        assert pool.get_stats()["pool_size"] == 1
        lose_one_and_fail()  # the backoff started over once min_size was reached
        assert tried_after(0.1)


def test_fill_hands_a_new_connection_to_a_waiter(make_real: MakePool, real_factory: FakeFactory) -> None:
    pool = make_real(min_size=1, max_size=1, timeout=30.0, opened=False)
    real_factory.gate = gate = threading.Event()
    filler = Worker(pool.run_maintenance)
    filler.start()
    wait_until(lambda: pool.get_stats()["pool_size"] == 1, what="the fill's reserved slot")
    waiter = Worker(pool.getconn)
    waiter.start()
    waiting(pool, 1)
    gate.set()
    filler.outcome()
    conn = waiter.outcome()
    assert conn is real_factory.made[0]
    assert pool.get_stats()["pool_available"] == 0


def test_fill_finishing_after_close_closes_its_connection(make_real: MakePool, real_factory: FakeFactory) -> None:
    pool = make_real(min_size=1, max_size=1, opened=False)
    real_factory.gate = gate = threading.Event()
    filler = Worker(pool.run_maintenance)
    filler.start()
    wait_until(lambda: pool.get_stats()["pool_size"] == 1, what="the fill's reserved slot")
    pool.close()
    gate.set()
    filler.outcome()
    assert real_factory.made[0].closed
    stats = pool.get_stats()
    assert stats["pool_size"] == 0
    assert stats["closes_idle"] == 0


# -- checkin, close -------------------------------------------------------------------


def test_broken_return_closes(make: MakePool) -> None:
    pool = make(max_size=2)
    conn = pool.getconn()
    pool.putconn(conn, broken=True)
    assert conn.closed
    stats = pool.get_stats()
    assert (stats["returns_bad"], stats["closes_broken"], stats["pool_size"]) == (1, 1, 0)


def test_returning_a_connection_not_checked_out_raises(make: MakePool, factory: FakeFactory) -> None:
    pool = make(name="orders", max_size=2)
    stranger = FakeConnection(99, 0.0, threading.current_thread())
    with pytest.raises(ValueError, match=r"<FakeConnection #99> is not checked out from pool 'orders'"):
        pool.putconn(stranger)
    conn = pool.getconn()
    pool.putconn(conn)
    with pytest.raises(ValueError, match="is not checked out"):
        pool.putconn(conn)
    assert pool.get_stats()["pool_available"] == 1


def test_close_fails_waiters_and_closes_later_returns(make_real: MakePool, real_factory: FakeFactory) -> None:
    pool = make_real(name="orders", max_size=2, timeout=30.0)
    kept, broken = pool.getconn(), pool.getconn()
    waiter = Worker(pool.getconn)
    waiter.start()
    waiting(pool, 1)
    pool.close()
    with pytest.raises(PoolClosed, match="the connection pool for database 'orders' was closed while waiting"):
        waiter.outcome()
    assert not kept.closed  # still checked out
    assert pool.get_stats()["pool_size"] == 2
    pool.putconn(kept)
    pool.putconn(broken, broken=True)
    assert kept.closed
    assert broken.closed
    assert real_factory.open == set()
    stats = pool.get_stats()
    assert stats["pool_size"] == 0
    assert stats["returns_bad"] == 1
    assert stats["closes_lifetime"] == stats["closes_broken"] == stats["closes_idle"] == 0  # not closed for a reason
    with pytest.raises(PoolClosed, match="the connection pool for database 'orders' is closed"):
        pool.getconn()
    pool.close()  # idempotent


def test_close_closes_idle_connections(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=3)
    conns = [pool.getconn() for _ in range(3)]
    for conn in conns:
        pool.putconn(conn)
    pool.close()
    assert all(conn.closed for conn in conns)
    assert pool.closed
    assert pool.get_stats()["pool_size"] == 0
    pool.open()  # does not reopen
    assert pool.closed
    pool.run_maintenance()  # no-op
    assert factory.connects == 3


def test_close_before_open(make: MakePool) -> None:
    pool = make(opened=False)
    pool.close()
    with pytest.raises(PoolClosed):
        pool.getconn()


def test_errors_closing_a_connection_are_logged_not_raised(
    make: MakePool, factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    def close(conn: FakeConnection) -> None:
        raise ConnectionLost("broken pipe")

    pool = make()
    pool._close_conn = close
    conn = pool.getconn()
    with caplog.at_level(logging.DEBUG, logger="django_mysql_pooled"):
        pool.putconn(conn, broken=True)
    assert "pool 'fake': error closing a connection" in caplog.text
    assert pool.get_stats()["pool_size"] == 0


# -- interrupted waits ------------------------------------------------------------------


class _InterruptingLock:
    """A waiter's lock whose wait ends in :class:`Interrupt`, after the test's wake actions."""

    on_wake: list[Callable[[], None]] = []

    def __init__(self, lock: Any) -> None:
        self._lock = lock

    def acquire(self, timeout: float = -1) -> bool:
        self._lock.acquire(timeout=timeout)
        for action in self.on_wake:
            action()
        raise Interrupt

    def release(self) -> None:
        self._lock.release()


class _InterruptedWaiter(Waiter):
    __slots__ = ()

    def __init__(self, now: float) -> None:
        super().__init__(now)
        setattr(self, "lock", _InterruptingLock(self.lock))  # noqa: B010 - not a threading.Lock


@pytest.fixture
def on_wake(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], None]]:
    """Make every wait for a connection end in :class:`Interrupt`; returns actions run just before."""
    actions: list[Callable[[], None]] = []
    monkeypatch.setattr(checkout_module, "Waiter", _InterruptedWaiter)
    monkeypatch.setattr(_InterruptingLock, "on_wake", actions)
    return actions


@pytest.mark.usefixtures("on_wake")
def test_interrupted_wait_leaves_the_queue(make: MakePool) -> None:
    pool = make(max_size=1, timeout=0.01)
    conn = pool.getconn()
    with pytest.raises(Interrupt):
        pool.getconn()
    assert pool.get_stats()["requests_waiting"] == 0
    pool.putconn(conn)
    assert pool.get_stats()["pool_available"] == 1


@pytest.mark.parametrize(
    ("served", "size", "available"),
    [("connection", 1, 1), ("expired connection", 0, 0), ("slot", 0, 0), ("closed", 1, 0)],
)
def test_interrupted_wait_passes_on_what_it_was_served(
    make: MakePool,
    clock: FakeClock,
    on_wake: list[Callable[[], None]],
    served: str,
    size: int,
    available: int,
) -> None:
    pool = make(max_size=1, timeout=30.0, max_lifetime=100.0)
    conn = pool.getconn()
    waiter = Worker(pool.getconn)
    waiter.start()
    waiting(pool, 1)
    if served == "expired connection":
        on_wake.append(lambda: clock.advance(100.0))
    if served == "slot":
        pool.putconn(conn, broken=True)
    elif served == "closed":
        pool.close()
    else:
        pool.putconn(conn)
    with pytest.raises(Interrupt):
        waiter.outcome()
    stats = pool.get_stats()
    assert (stats["requests_waiting"], stats["pool_size"], stats["pool_available"]) == (0, size, available)
    assert stats["closes_lifetime"] == (served == "expired connection")
    assert stats["requests_num"] == 1


# -- leaks ---------------------------------------------------------------------------------


def test_leak_is_reported_once_with_the_checkout_stack(
    make: MakePool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make(name="shop", leak_timeout=100.0)
    conn = pool.getconn()
    other = pool.getconn()
    pool.putconn(other)
    clock.advance(99.0)
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        pool.run_maintenance()
        assert caplog.records == []
        clock.advance(2.0)
        pool.run_maintenance()
        clock.advance(100.0)
        pool.run_maintenance()
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert message.startswith("pool 'shop': a connection has been checked out for 101.0 s (leak_timeout=100.0 s)")
    frames = [line for line in message.splitlines() if line.lstrip().startswith("File ")]
    assert frames[-1].endswith("in test_leak_is_reported_once_with_the_checkout_stack")  # the caller's frame last
    assert pool.get_stats()["leaks_detected"] == 1
    pool.putconn(conn)


def test_leak_is_reported_again_for_a_later_checkout(
    make: MakePool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make(leak_timeout=10.0)
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        for _ in range(2):
            conn = pool.getconn()
            clock.advance(11.0)
            pool.run_maintenance()
            pool.putconn(conn)
    assert len(caplog.records) == 2
    assert pool.get_stats()["leaks_detected"] == 2


def test_no_leak_detection_without_leak_timeout(
    make: MakePool, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    pool = make()
    pool.getconn()
    clock.advance(1e6)
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        pool.run_maintenance()
    assert caplog.records == []
    assert pool.get_stats()["leaks_detected"] == 0


def test_leak_without_a_recorded_stack(make: MakePool, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    pool = make(leak_timeout=None)
    pool.getconn()
    pool.leak_timeout = 5.0  # turned on after the checkout: no stack was recorded
    clock.advance(6.0)
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        pool.run_maintenance()
    assert "(stack not recorded)" in caplog.text


# -- fork ------------------------------------------------------------------------------------


def test_forget_after_fork_detaches_every_connection(make: MakePool, factory: FakeFactory) -> None:
    pool = make(max_size=3)
    held = pool.getconn()
    idle = [pool.getconn(), pool.getconn()]
    for conn in idle:
        pool.putconn(conn)
    pool.forget_after_fork()
    assert pool.closed
    for conn in [held, *idle]:
        assert conn.detached
        assert not conn.closed
    assert factory.closes == 0
    assert factory.open == set()
    stats = pool.get_stats()
    assert (stats["pool_size"], stats["pool_available"], stats["connections_in_use"]) == (0, 0, 0)
    with pytest.raises(PoolClosed):
        pool.getconn()
    pool.close()  # already closed: closes nothing
    assert factory.closes == 0


def test_forget_after_fork_survives_a_failing_detach(factory: FakeFactory, caplog: pytest.LogCaptureFixture) -> None:
    def detach(conn: FakeConnection) -> None:
        raise OSError("bad file descriptor")

    pool = ConnectionPool(factory.connect, close=factory.close, detach=detach, clock=factory.clock, name="child")
    pool.getconn()
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        pool.forget_after_fork()
    assert "pool 'child': could not detach an inherited connection" in caplog.text
    assert pool.closed


def test_detach_defaults_to_close(factory: FakeFactory) -> None:
    pool = ConnectionPool(factory.connect, close=factory.close, clock=factory.clock)
    conn = pool.getconn()
    pool.forget_after_fork()
    assert conn.closed


# -- threads ------------------------------------------------------------------------------------


def test_threads_never_share_a_connection_nor_exceed_max_size(make_real: MakePool, real_factory: FakeFactory) -> None:
    factory = real_factory
    factory.max_open = 4
    pool = make_real(max_size=4, timeout=60.0)
    threads, rounds = 16, 500
    problems: list[str] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        me = threading.current_thread()
        for i in range(rounds):
            conn = pool.getconn()
            if conn.holder is not None:
                problems.append(f"{conn!r} held by {conn.holder.name} and {me.name}")
            conn.holder = me
            if rng.random() < 0.3:
                time.sleep(0)
            if conn.holder is not me:
                problems.append(f"{conn!r} taken from {me.name}")
            conn.holder = None
            if i % 97 == 0:
                conn.dead = True  # its next reset fails
            pool.putconn(conn, broken=i % 89 == 0)

    workers = [Worker(functools.partial(hammer, seed), name=f"hammer-{seed}") for seed in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.outcome(timeout=120.0)
    assert problems == []
    assert factory.peak_open <= 4
    stats = pool.get_stats()
    assert stats["requests_num"] == threads * rounds
    assert stats["requests_errors"] == 0
    assert stats["pool_size"] == len(factory.open) == stats["pool_available"]
    assert stats["connections_num"] == factory.connects
    assert stats["resets_failed"] == factory.resets_failed > 0
    assert stats["returns_bad"] == threads * len(range(0, rounds, 89))


# -- statistics, hooks, worker ---------------------------------------------------------------------


def test_stats_keys_and_pop_stats(make: MakePool, clock: FakeClock) -> None:
    pool = make(min_size=0, max_size=3)
    assert pool.get_stats().keys() >= STATS_KEYS
    conn = pool.getconn()
    clock.advance(0.25)
    pool.putconn(conn)
    kept = pool.getconn()
    pool.count("queries_cancelled")
    pool.count("queries_cancelled", 2)
    stats = pool.pop_stats()
    assert stats.keys() >= STATS_KEYS
    assert all(isinstance(value, int) for value in stats.values())
    assert stats["requests_num"] == 2
    assert stats["requests_wait_ms"] == 0  # no checkout was queued: opening and resetting do not count
    assert stats["usage_ms"] == 250
    assert stats["queries_cancelled"] == 3
    assert (stats["pool_min"], stats["pool_max"], stats["pool_size"], stats["connections_in_use"]) == (0, 3, 1, 1)
    after = pool.get_stats()
    assert (after["pool_size"], after["connections_in_use"], after["pool_max"]) == (1, 1, 3)
    counters = set(after) - {"pool_min", "pool_max", "pool_size", "pool_available", "connections_in_use"}
    assert {key: after[key] for key in counters} == dict.fromkeys(counters, 0)
    assert after["queries_cancelled"] == 0  # a counter seen once stays, at zero
    pool.putconn(kept)


def test_hooks_run_after_maintenance_and_at_close(make: MakePool, caplog: pytest.LogCaptureFixture) -> None:
    pool = make(name="hooked", opened=False)
    calls: list[str] = []
    ran = threading.Event()

    def failing(_pool: Pool) -> None:
        raise RuntimeError("stats directory is read-only")

    def recording(seen: Pool) -> None:
        assert seen is pool
        calls.append(threading.current_thread().name)
        ran.set()

    pool.hooks += [failing, recording]
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        pool.putconn(pool.getconn())  # opens: the worker runs a first round
        assert ran.wait(10)
        pool.close()
    assert calls == ["django_mysql_pooled-hooked-maintenance", "MainThread"]
    failures = [r for r in caplog.records if "hook" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].getMessage().startswith("pool 'hooked': hook <function")
    assert failures[0].exc_info is not None


def test_worker_survives_a_failing_round(factory: FakeFactory, caplog: pytest.LogCaptureFixture) -> None:
    failing = True

    def clock() -> float:
        if failing and threading.current_thread().name.endswith("-maintenance"):
            raise RuntimeError("clock went backwards")
        return 0.0

    pool = factory.pool(clock=clock, name="flaky", maintenance_interval=0.01)
    rounds: list[None] = []
    pool.hooks.append(lambda _pool: rounds.append(None))
    with caplog.at_level(logging.ERROR, logger="django_mysql_pooled"):
        pool.open()
        wait_until(lambda: len(rounds) >= 2, what="two maintenance rounds")
        failing = False
        pool.close()
    assert "pool 'flaky': maintenance failed" in caplog.text


def test_worker_stops_when_the_pool_is_garbage_collected(factory: FakeFactory) -> None:
    pool = factory.pool(name="collected", maintenance_interval=0.01)
    pool.open()
    worker = pool._worker
    assert worker is not None
    assert worker.name == "django_mysql_pooled-collected-maintenance"
    assert worker.daemon
    del pool
    gc.collect()
    worker.join(10)
    assert not worker.is_alive()


def test_pid_is_the_creating_process(make: MakePool) -> None:
    import os

    assert make().pid == os.getpid()


class StallingReset:
    """A reset that blocks like one on a stalled network until interrupted."""

    def __init__(self) -> None:
        self.stall = False
        self.cut = threading.Event()
        self.interrupted: list[FakeConnection] = []

    def reset(self, conn: FakeConnection) -> str:
        if self.stall and not self.cut.wait(30):
            return "reset_connection"
        if self.stall:
            raise ConnectionLost("stalled reset cut off")
        return "reset_connection"

    def interrupt(self, conn: FakeConnection) -> None:
        self.interrupted.append(conn)
        self.cut.set()


def test_guard_cuts_off_a_reset_stalled_past_the_deadline(real_factory: FakeFactory) -> None:
    stalling = StallingReset()
    pool = ConnectionPool(
        real_factory.connect,
        reset=stalling.reset,
        interrupt=stalling.interrupt,
        close=real_factory.close,
        name="stalled",
        max_size=1,
        timeout=0.3,
        guard_interval=0.02,
    )
    try:
        conn = pool.getconn()
        pool.putconn(conn)
        stalling.stall = True
        started = time.monotonic()
        with pytest.raises(PoolTimeout, match="database 'stalled'"):
            pool.getconn()
        assert 0.25 <= time.monotonic() - started < 2.0
        assert stalling.interrupted == [conn]
        assert conn.closed
        stats = pool.get_stats()
        assert (stats["requests_timeouts"], stats["resets_failed"], stats["pool_size"]) == (1, 1, 0)
        stalling.stall = False
        assert pool.getconn() is not conn  # the slot was freed: a new connection
    finally:
        pool.close()


def test_guard_leaves_resets_that_finish_in_time(real_factory: FakeFactory) -> None:
    stalling = StallingReset()
    pool = ConnectionPool(
        real_factory.connect,
        reset=stalling.reset,
        interrupt=stalling.interrupt,
        close=real_factory.close,
        max_size=1,
        timeout=5.0,
        guard_interval=0.01,
    )
    try:
        for _ in range(50):
            pool.putconn(pool.getconn())
        time.sleep(0.05)
        assert stalling.interrupted == []
        assert pool.get_stats()["resets_num"] == 49
    finally:
        pool.close()


def test_a_burst_with_slow_connects_opens_few_connections(real_factory: FakeFactory) -> None:
    """HikariCP's spike: 30 threads at once, 100 ms connects, 2 ms of work, max_size 30."""
    slow_connect = real_factory.connect

    def connect(timeout: float | None) -> FakeConnection:
        time.sleep(0.1)
        return slow_connect(timeout)

    pool = ConnectionPool(connect, reset=real_factory.reset, close=real_factory.close, max_size=30, timeout=10.0)
    barrier = threading.Barrier(30)
    errors: list[BaseException] = []

    def request() -> None:
        try:
            barrier.wait(5)
            conn = pool.getconn()
            time.sleep(0.002)
            pool.putconn(conn)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=request) for _ in range(30)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        stats = pool.get_stats()
        assert errors == []
        assert stats["requests_num"] == 30
        # Two connects at a time (max_connecting); the rest are served by returned
        # connections. Opening in every waiting thread would make this 30.
        assert real_factory.connects <= 2 * pool.max_connecting
        assert stats["requests_queued"] >= 20
    finally:
        pool.close()


def test_guard_gives_a_reset_at_least_min_reset_time_with_timeout_zero(real_factory: FakeFactory) -> None:
    interrupted: list[FakeConnection] = []

    def slow_reset(conn: FakeConnection) -> str:
        time.sleep(0.2)  # longer than the guard's interval, far shorter than MIN_RESET_TIME
        return "reset_connection"

    pool = ConnectionPool(
        real_factory.connect,
        reset=slow_reset,
        interrupt=interrupted.append,
        close=real_factory.close,
        max_size=1,
        timeout=0,
        guard_interval=0.01,
    )
    try:
        conn = pool.getconn()
        pool.putconn(conn)
        assert pool.getconn() is conn  # timeout=0: "do not queue", the reset still runs to its end
        assert interrupted == []
    finally:
        pool.close()


# -- checkouts whose owner is gone -------------------------------------------------


class Owner:
    """What holds a checkout (a Django wrapper in the backend)."""

    shared = False


def _owner_pool(factory: FakeFactory) -> ConnectionPool[FakeConnection]:
    return factory.pool(reset_on="checkin", max_size=1, timeout=0.5, shared=lambda owner: owner.shared)


def test_a_checkout_whose_owner_was_collected_is_reclaimed(
    factory: FakeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with closing(_owner_pool(factory)) as pool:
        owner = Owner()
        conn = pool.getconn(owner=owner)
        del owner
        gc.collect()
        with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
            again = pool.getconn(owner=Owner())  # would time out: the pool has one connection
        # Closed, never handed out again: a driver cursor may still hold it.
        assert again is not conn and conn.closed and conn.resets == 0
        stats = pool.get_stats()
        assert (stats["returns_reclaimed"], stats["leaks_detected"], stats["requests_timeouts"]) == (1, 1, 0)
        assert ["reclaimed a connection" in r.getMessage() for r in caplog.records] == [True]


@pytest.mark.parametrize(("shared", "reclaimed"), [(False, True), (True, False)])
def test_a_checkout_whose_thread_ended_is_reclaimed_unless_shared(
    factory: FakeFactory, shared: bool, reclaimed: bool
) -> None:
    with closing(_owner_pool(factory)) as pool:
        owner = Owner()
        owner.shared = shared
        worker = Worker(lambda: pool.getconn(owner=owner))
        worker.start()
        worker.outcome()  # the thread ends holding its checkout
        if reclaimed:
            assert pool.getconn(owner=Owner()) is not None
        else:
            with pytest.raises(PoolTimeout):
                pool.getconn(owner=Owner())
        assert pool.get_stats()["returns_reclaimed"] == int(reclaimed)


def test_putconn_by_another_owner_is_refused(factory: FakeFactory) -> None:
    with closing(_owner_pool(factory)) as pool:
        owner = Owner()
        conn = pool.getconn(owner=owner)
        with pytest.raises(ValueError, match="is not checked out from pool"):
            pool.putconn(conn, owner=Owner())
        pool.putconn(conn, owner=owner)
