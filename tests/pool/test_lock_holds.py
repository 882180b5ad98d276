"""How often the pool's fast paths take its lock, and what the threads around them see meanwhile.

A checkout of a connection returned moments ago takes the lock once (it leaves
the idle list and enters ``_in_use`` in one hold; the zero-round-trip check
runs after); a checkin reset in the returning thread takes it twice (the
guard's registration, then the count and the keep). The pool's lock is
swapped for a proxy that counts the acquisitions of each thread, so the
maintenance, guard and return-worker threads do not blur the count.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from django_mysql_pooled.pool.pool import ConnectionPool
from tests.pool.fake_connections import FakeClock, FakeConnection, FakeFactory, closing, start

Pool = ConnectionPool[FakeConnection]


class CountingLock:
    """Stands in for the pool's ``threading.Lock``, counting acquisitions per thread."""

    def __init__(self, lock: Any) -> None:
        self._lock = lock
        self.by_thread: Counter[int] = Counter()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        self.by_thread[threading.get_ident()] += 1
        return bool(self._lock.acquire(blocking, timeout))

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def here(self) -> int:
        """Acquisitions by the calling thread so far."""
        return self.by_thread[threading.get_ident()]


class Owner:
    """What holds a checkout (a Django wrapper in the backend)."""


def counted(pool: Pool) -> CountingLock:
    """Open *pool*, then count its lock's acquisitions from now on."""
    start(pool)
    lock = CountingLock(pool._lock)
    pool._lock = lock  # type: ignore[assignment]
    return lock


def checkin_pool(factory: FakeFactory, **options: Any) -> Pool:
    options.setdefault("interrupt", lambda conn: None)  # the guard watches resets and pings
    return factory.pool(reset_on="checkin", alive=factory.alive, check=factory.ping, **options)


def test_a_checkout_validated_without_a_round_trip_takes_the_lock_once(factory: FakeFactory) -> None:
    with closing(checkin_pool(factory, max_size=2)) as pool:
        lock = counted(pool)
        pool.putconn(pool.getconn())  # opened, then reset at checkin
        before = lock.here()
        owner = Owner()
        conn = pool.getconn(owner=owner)
        assert lock.here() - before == 1
        stats = pool.get_stats()
        assert (stats["requests_num"], stats["checks_fast"], stats["connections_in_use"]) == (2, 1, 1)
        assert pool.was_reused(conn) and factory.alive_ok == 1
        pool.putconn(conn, owner=owner)  # registered with its owner


def test_a_checkout_from_a_pool_without_reset_takes_the_lock_once(factory: FakeFactory) -> None:
    pool = ConnectionPool(factory.connect, close=factory.close, maintenance_interval=3600.0)
    with closing(pool):
        lock = counted(pool)
        conn = pool.getconn()
        pool.putconn(conn)
        before = lock.here()
        assert pool.getconn() is conn
        assert lock.here() - before == 1
        assert pool.was_reused(conn)
        before = lock.here()
        pool.putconn(conn)
        assert lock.here() - before == 1


def test_a_checkin_reset_in_the_returning_thread_takes_the_lock_twice_under_the_guard(
    factory: FakeFactory,
) -> None:
    watched: list[int] = []
    pool = checkin_pool(factory, num_workers=0)

    def reset(conn: FakeConnection) -> str:
        watched.append(len(pool._resetting))  # the guard can cut it off
        return factory.reset(conn)

    pool._reset = reset
    with closing(pool):
        lock = counted(pool)
        conn = pool.getconn()
        before = lock.here()
        pool.putconn(conn)
        assert lock.here() - before == 2
        assert watched == [1] and not pool._resetting
        stats = pool.get_stats()
        assert (stats["resets_num"], stats["resets_reset_connection"], stats["pool_available"]) == (1, 1, 1)


def test_a_checkin_queued_for_a_worker_takes_the_lock_once_and_the_worker_twice(factory: FakeFactory) -> None:
    with closing(checkin_pool(factory, num_workers=1)) as pool:
        lock = counted(pool)
        conn = pool.getconn()
        before = lock.here()
        pool.putconn(conn)
        assert lock.here() - before == 1
        assert pool.drain(10.0)
        (worker,) = pool._return_workers
        assert lock.by_thread[worker.ident or 0] == 2
        assert pool.get_stats()["resets_num"] == 1 and pool.getconn() is conn


def test_a_reset_at_checkout_takes_the_lock_twice_and_its_checkin_once(factory: FakeFactory) -> None:
    with closing(factory.pool(interrupt=lambda conn: None)) as pool:
        lock = counted(pool)
        pool.putconn(pool.getconn())
        before = lock.here()
        conn = pool.getconn()
        assert lock.here() - before == 2
        before = lock.here()
        pool.putconn(conn)
        assert lock.here() - before == 1
        assert pool.get_stats()["resets_num"] == 1


def test_maintenance_does_not_reclaim_a_checkout_during_its_check(factory: FakeFactory) -> None:
    """Registered before the zero-round-trip check: its owner and thread are alive meanwhile."""
    pool = checkin_pool(factory, max_size=1, shared=lambda owner: False)
    rounds: list[int] = []

    def alive(conn: FakeConnection) -> bool:
        assert pool.get_stats()["connections_in_use"] == 1
        pool.run_maintenance()  # as the maintenance thread could, right now
        rounds.append(pool.get_stats()["returns_reclaimed"])
        return factory.alive(conn)

    pool._fast_alive = alive
    with closing(pool):
        start(pool)
        pool.putconn(pool.getconn(owner=Owner()))
        conn = pool.getconn(owner=Owner())  # referenced by nothing but the call
        assert rounds == [0] and not conn.closed
        assert pool.get_stats()["returns_reclaimed"] == 0
        pool._fast_alive = factory.alive
        pool.run_maintenance()  # now that the call returned, its owner is gone
        assert conn.closed and pool.get_stats()["returns_reclaimed"] == 1


def test_a_dead_connection_found_at_checkout_is_taken_back_and_replaced(factory: FakeFactory) -> None:
    with closing(checkin_pool(factory, max_size=1)) as pool:
        start(pool)
        conn = pool.getconn()
        pool.putconn(conn)
        conn.dead = True
        replacement = pool.getconn()
        assert replacement is not conn and conn.closed
        stats = pool.get_stats()
        assert (stats["requests_num"], stats["checks_fast"], stats["checks_failed"]) == (2, 0, 1)
        assert (stats["connections_in_use"], stats["pool_size"], stats["resets_reconnect"]) == (1, 1, 1)
        pool.putconn(replacement)


def test_a_checkin_reset_cut_off_just_as_it_succeeds_is_not_kept(factory: FakeFactory, clock: FakeClock) -> None:
    interrupted: list[FakeConnection] = []
    pool = checkin_pool(factory, num_workers=0, timeout=2.0, interrupt=interrupted.append, guard_interval=3600.0)

    def reset(conn: FakeConnection) -> str:
        clock.advance(5.0)  # past its deadline
        pool.interrupt_overdue_resets()  # the guard's round, while the reset runs
        return factory.reset(conn)  # and then it succeeds anyway

    pool._reset = reset
    with closing(pool):
        start(pool)
        conn = pool.getconn()
        pool.putconn(conn)
        assert interrupted == [conn] and conn.closed
        stats = pool.get_stats()
        assert (stats["resets_num"], stats["closes_broken"], stats["pool_size"], stats["pool_available"]) == (
            0,
            1,
            0,
            0,
        )
