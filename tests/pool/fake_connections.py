"""A fake connection factory and a fake clock for the pure pool tests.

The factory hands its ``connect``, ``reset``, ``close`` and ``detach`` to a
:class:`~django_mysql_pooled.pool.pool.ConnectionPool` and keeps the truth the
tests check the pool against: which connections are open, how many ever
were at once, who holds each one. Anything the pool must never do (close a
connection twice, open more than ``max_size``) is recorded in ``violations``
rather than raised, because the pool swallows errors from ``close``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django_mysql_pooled.pool.pool import ConnectionPool


class ConnectError(Exception):
    """The fake server refused a connection."""


class ConnectionLost(Exception):
    """The fake server dropped a connection (its reset fails)."""


class FakeConnection:
    """A connection of the fake server."""

    def __init__(self, number: int, opened_at: float, thread: threading.Thread) -> None:
        self.number = number
        self.opened_at = opened_at
        self.opened_in = thread
        self.closed = False
        self.detached = False
        self.dead = False
        self.resets = 0
        self.holder: threading.Thread | None = None
        self.host: str | None = None  # its server, with several hosts (fake_hosts.py)

    def __repr__(self) -> str:
        return f"<FakeConnection #{self.number}>"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeFactory:
    """Opens, resets, closes and detaches :class:`FakeConnection` objects."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_open: int | None = None) -> None:
        self.clock = clock
        self.max_open = max_open
        self.lock = threading.Lock()
        self.made: list[FakeConnection] = []
        self.open: set[FakeConnection] = set()
        self.peak_open = 0
        self.connects = 0
        self.connect_errors = 0
        self.connect_timeouts: list[float | None] = []
        self.resets_ok = 0
        self.resets_failed = 0
        self.closes = 0
        self.violations: list[str] = []
        #: Exceptions the next connects raise, one per call, before connecting works again.
        self.connect_failures: list[BaseException] = []
        #: When set, every connect raises this (after ``connect_failures``).
        self.always_fail: BaseException | None = None
        #: When set, connect waits for it first (to hold a thread mid-connect).
        self.gate: threading.Event | None = None
        self.reset_method = "reset_connection"
        self.reset_error: BaseException | None = None  # raised by every reset when set
        self.pings_ok = 0
        self.pings_failed = 0
        self.alive_failed = 0
        self.alive_ok = 0

    def connect(self, timeout: float | None) -> FakeConnection:
        gate = self.gate
        if gate is not None and not gate.wait(30):
            self.violations.append("connect gate never opened")
        with self.lock:
            self.connect_timeouts.append(timeout)
            error = self.connect_failures.pop(0) if self.connect_failures else self.always_fail
            if error is not None:
                self.connect_errors += 1
                raise error
            return self._new_connection_locked()

    def _new_connection_locked(self, host: str | None = None) -> FakeConnection:
        """A connection just opened (to *host*), counted; a violation past ``max_open`` (lock held)."""
        conn = FakeConnection(len(self.made) + 1, self.clock(), threading.current_thread())
        conn.host = host
        self.made.append(conn)
        self.open.add(conn)
        self.connects += 1
        self.peak_open = max(self.peak_open, len(self.open))
        if self.max_open is not None and len(self.open) > self.max_open:
            self.violations.append(f"{len(self.open)} connections open, max_size is {self.max_open}")
        return conn

    def _use_locked(self, conn: FakeConnection, what: str) -> None:
        """Record a use of a closed or detached connection; raise if the fake server dropped it."""
        if conn.closed or conn.detached:
            self.violations.append(f"{what} of {conn!r}, which is closed or detached")
        if conn.dead:
            raise ConnectionLost(f"{conn!r}: server has gone away")

    def reset(self, conn: FakeConnection) -> str:
        with self.lock:
            try:
                self._use_locked(conn, "reset")
            except ConnectionLost:
                self.resets_failed += 1
                raise
            if self.reset_error is not None:
                self.resets_failed += 1
                raise self.reset_error
            conn.resets += 1
            self.resets_ok += 1
            return self.reset_method

    def alive(self, conn: FakeConnection) -> bool:
        """The zero-round-trip check: the fake server's dead connections show EOF."""
        with self.lock:
            self.alive_failed += conn.dead
            self.alive_ok += not conn.dead
            return not conn.dead

    def ping(self, conn: FakeConnection) -> None:
        """The round-trip check."""
        with self.lock:
            try:
                self._use_locked(conn, "ping")
            except ConnectionLost:
                self.pings_failed += 1
                raise
            self.pings_ok += 1

    def close(self, conn: FakeConnection) -> None:
        with self.lock:
            if conn.closed or conn.detached:
                self.violations.append(f"{conn!r} closed twice")
            conn.closed = True
            self.open.discard(conn)
            self.closes += 1

    def detach(self, conn: FakeConnection) -> None:
        with self.lock:
            conn.detached = True
            self.open.discard(conn)

    def pool(self, clock: Callable[[], float] | None = None, **options: Any) -> ConnectionPool[FakeConnection]:
        """Build a pool on this factory (maintenance thread rounds far apart unless told)."""
        options.setdefault("maintenance_interval", 3600.0)
        options.setdefault("name", "fake")
        return ConnectionPool(
            self.connect,
            reset=self.reset,
            close=self.close,
            detach=self.detach,
            clock=clock or self.clock,
            **options,
        )


def start(pool: ConnectionPool[Any], timeout: float = 10.0) -> None:
    """Open *pool* and wait for its maintenance thread's first round (the initial fill)."""
    done = threading.Event()

    def hook(_pool: ConnectionPool[Any]) -> None:
        done.set()

    pool.hooks.append(hook)
    pool.open()
    try:
        if not done.wait(timeout):
            raise AssertionError("the maintenance thread did not run its first round")
    finally:
        pool.hooks.remove(hook)


class Worker(threading.Thread):
    """A thread that runs *target* and keeps its result or exception for the test to check."""

    def __init__(self, target: Callable[[], Any], name: str | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout: float = 30.0) -> Any:
        """Join; re-raise the thread's exception here; return its result."""
        self.join(timeout)
        if self.is_alive():
            raise AssertionError(f"thread {self.name} still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll *condition* (real time) until true; fail after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


@contextmanager
def closing(pool: ConnectionPool[Any]) -> Iterator[ConnectionPool[Any]]:
    """Close *pool* on the way out."""
    try:
        yield pool
    finally:
        pool.close()
