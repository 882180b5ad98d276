"""Checkin resets on return workers (``num_workers``): the returning thread goes on at once.

A returned connection is reset by a worker before any checkout gets it; when
the workers are busy, the returning thread resets it itself; ``close()`` and
a fork never leave a queued connection behind.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from django_mysql_pooled.pool.pool import ConnectionPool
from tests.pool.fake_connections import FakeConnection, FakeFactory, wait_until

Pool = ConnectionPool[FakeConnection]


class Gate:
    """A reset that waits for :meth:`open` and records the threads it ran in."""

    def __init__(self, factory: FakeFactory) -> None:
        self.factory = factory
        self.event = threading.Event()
        self.threads: list[str] = []
        self.started = threading.Semaphore(0)

    def __call__(self, conn: FakeConnection) -> str:
        self.threads.append(threading.current_thread().name)
        self.started.release()
        assert self.event.wait(30), "the test never opened the gate"
        return self.factory.reset(conn)

    def open(self) -> None:
        self.event.set()


@pytest.fixture
def factory() -> FakeFactory:
    return FakeFactory()


@pytest.fixture
def gate(factory: FakeFactory) -> Iterator[Gate]:
    gate = Gate(factory)
    yield gate
    gate.open()


def make(factory: FakeFactory, reset: Any, **options: Any) -> Pool:
    options.setdefault("maintenance_interval", 3600.0)
    return ConnectionPool(
        factory.connect,
        reset=reset,
        reset_on="checkin",
        close=factory.close,
        detach=factory.detach,
        name="returns",
        **options,
    )


def test_putconn_returns_before_the_reset_and_no_checkout_gets_the_connection_first(
    factory: FakeFactory, gate: Gate
) -> None:
    pool = make(factory, gate, max_size=1, num_workers=1, timeout=10.0)
    try:
        conn = pool.getconn()
        started = time.monotonic()
        pool.putconn(conn)
        assert time.monotonic() - started < 1.0  # the gate is still closed: a worker holds the reset
        assert gate.started.acquire(timeout=10)
        assert gate.threads == ["django_mysql_pooled-returns-return-0"]
        got: list[FakeConnection] = []
        taker = threading.Thread(target=lambda: got.append(pool.getconn()))
        taker.start()
        time.sleep(0.1)
        assert not got, "a checkout got a connection whose reset had not finished"
        gate.open()
        taker.join(10)
        assert got == [conn] and conn.resets == 1
        pool.putconn(conn)
        assert pool.drain(10)
    finally:
        pool.close()
    assert not factory.violations


def test_the_returning_thread_resets_when_the_workers_are_busy(factory: FakeFactory, gate: Gate) -> None:
    workers = 2
    queued = 2 * workers  # what putconn hands to the workers before resetting itself
    pool = make(factory, gate, max_size=queued + 1, num_workers=workers, timeout=10.0)
    try:
        conns = [pool.getconn() for _ in range(queued + 1)]
        for conn in conns[:queued]:
            pool.putconn(conn)
        for _ in range(workers):
            assert gate.started.acquire(timeout=10)
        inline = threading.Thread(target=pool.putconn, args=(conns[-1],), name="returning-thread")
        inline.start()
        assert gate.started.acquire(timeout=10)
        assert "returning-thread" in gate.threads
        gate.open()
        inline.join(10)
        assert pool.drain(10)
        assert pool.get_stats()["pool_available"] == queued + 1
        assert sum(conn.resets for conn in conns) == queued + 1
    finally:
        pool.close()
    assert not factory.violations


def test_close_closes_queued_returns_without_resetting_them(factory: FakeFactory, gate: Gate) -> None:
    pool = make(factory, gate, max_size=2, num_workers=1, timeout=10.0)
    conns = [pool.getconn() for _ in range(2)]
    for conn in conns:
        pool.putconn(conn)
    assert gate.started.acquire(timeout=10)  # the worker resets the first; the second waits in the queue
    closer = threading.Thread(target=pool.close)
    closer.start()
    wait_until(lambda: conns[1].closed)
    assert conns[1].resets == 0
    gate.open()  # the first one's reset ends: the pool is closed, so it is closed too
    closer.join(10)
    assert not closer.is_alive()
    wait_until(lambda: conns[0].closed)
    assert [c.resets for c in conns] == [1, 0]
    assert not [t for t in threading.enumerate() if t.name.startswith("django_mysql_pooled-returns-return")]
    assert not factory.violations


def test_a_fork_detaches_queued_returns(factory: FakeFactory, gate: Gate) -> None:
    pool = make(factory, gate, max_size=2, num_workers=1, timeout=10.0)
    conns = [pool.getconn() for _ in range(2)]
    for conn in conns:
        pool.putconn(conn)
    assert gate.started.acquire(timeout=10)
    pool.forget_after_fork()  # what the child does: the queued one must be detached, not lost
    assert conns[1].detached and not conns[1].closed
    gate.open()


def test_workers_end_when_the_pool_is_collected(factory: FakeFactory) -> None:
    pool = make(factory, factory.reset, max_size=1, num_workers=1)
    pool.putconn(pool.getconn())
    assert pool.drain(10)
    ref = weakref.ref(pool)
    del pool
    gc.collect()
    assert ref() is None
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name.startswith("django_mysql_pooled-returns-return")]
    )
