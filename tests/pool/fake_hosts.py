"""Fake servers behind one pool: a :class:`FakeFactory` whose connections each belong to a host.

A test takes a host down (:meth:`FakeHosts.take_down`: new connects to it are
refused and its open connections die, so their next reset or ping fails) or
brings it back; the factory records each connect with the host and the
timeout it was given, and classifies errors as the MySQL side does: a
refused connect (:class:`HostDown`) and a dropped connection
(:class:`~tests.pool.fake_connections.ConnectionLost`) are the host's, any
other error (:class:`NotTheHost`, e.g. bad credentials) is not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django_mysql_pooled.pool import maintenance
from django_mysql_pooled.pool.hosts import FAILOVER, HostSet
from django_mysql_pooled.pool.pool import ConnectionPool
from tests.pool.fake_connections import ConnectionLost, FakeConnection, FakeFactory

__all__ = ["A", "B", "C", "FakeHosts", "HostDown", "NotTheHost", "host_of", "host_stat", "quiet_prober", "states"]

A, B, C = "a:3306", "b:3306", "c:3306"


class HostDown(Exception):
    """Nothing listens on the host (MySQL's 2003)."""


class NotTheHost(Exception):
    """An error that would be the same on every host (MySQL's 1045, access denied)."""


class FakeHosts(FakeFactory):
    """Opens :class:`FakeConnection` objects to named hosts, some of which may be down.

    :param labels: the hosts, ``"host:port"``, in the configured order.
    """

    def __init__(self, labels: list[str], clock: Callable[[], float], max_open: int | None = None) -> None:
        super().__init__(clock, max_open)
        self.labels = labels
        #: Hosts that refuse new connections now.
        self.down: set[str] = set()
        #: Every ``connect_host`` call: ``(label, timeout)``, refused ones included.
        self.dials: list[tuple[str, float]] = []
        #: Exceptions the next connects to a host raise, one per call (before ``down`` applies).
        self.host_failures: dict[str, list[BaseException]] = {}
        #: Called at each connect to a host, before it is decided (a test can move the clock).
        self.on_dial: Callable[[str, float], None] | None = None

    def connect(self, timeout: float | None) -> FakeConnection:
        """A pool with several hosts must never use the one-server connect."""
        self.violations.append("connect() called on a pool with several hosts")
        return super().connect(timeout)

    def connect_host(self, label: str, timeout: float) -> FakeConnection:
        gate = self.gate
        if gate is not None and not gate.wait(30):
            self.violations.append("connect gate never opened")
        if self.on_dial is not None:
            self.on_dial(label, timeout)
        with self.lock:
            self.dials.append((label, timeout))
            failures = self.host_failures.get(label)
            error: BaseException | None = failures.pop(0) if failures else None
            if error is None and label in self.down:
                error = HostDown(f"(2003) Can't connect to server on {label}")
            if error is not None:
                self.connect_errors += 1
                raise error
            return self._new_connection_locked(label)

    @staticmethod
    def host_error(exc: BaseException) -> str | None:
        """The classifier the pool is given: what makes a host unusable."""
        return str(exc) if isinstance(exc, HostDown | ConnectionLost) else None

    def take_down(self, label: str) -> None:
        """The server stops: new connects are refused, open connections die."""
        with self.lock:
            self.down.add(label)
            for conn in self.open:
                if host_of(conn) == label:
                    conn.dead = True

    def bring_up(self, label: str) -> None:
        with self.lock:
            self.down.discard(label)

    def open_on(self, label: str) -> set[FakeConnection]:
        """The connections to *label* open now (the truth the pool's per-host counts must match)."""
        with self.lock:
            return {conn for conn in self.open if host_of(conn) == label}

    def pool(self, clock: Callable[[], float] | None = None, **options: Any) -> ConnectionPool[FakeConnection]:
        """A pool over :attr:`labels` (``policy``, ``backoff`` and ``backoff_max`` for its :class:`HostSet`)."""
        hosts = HostSet(
            self.labels,
            policy=options.pop("policy", FAILOVER),
            backoff=options.pop("backoff", 1.0),
            backoff_max=options.pop("backoff_max", 30.0),
        )
        options.setdefault("name", "hosts")
        return super().pool(clock, hosts=hosts, connect_host=self.connect_host, host_error=self.host_error, **options)


def host_of(conn: FakeConnection) -> str:
    """The host a fake connection was opened to."""
    assert conn.host is not None, f"{conn!r} was not opened to a host"
    return conn.host


@contextmanager
def quiet_prober(interval: float = 3600.0) -> Iterator[None]:
    """Pools opened inside have a prober thread that sleeps: the test probes (``probe_hosts()``) itself."""
    saved = getattr(maintenance, "PROBE_INTERVAL")  # noqa: B009 - maintenance imports it from hosted.py
    setattr(maintenance, "PROBE_INTERVAL", interval)  # noqa: B010
    try:
        yield
    finally:
        setattr(maintenance, "PROBE_INTERVAL", saved)  # noqa: B010


def states(pool: ConnectionPool[FakeConnection]) -> dict[str, object]:
    """Each host's state, as the pool sees it."""
    return {label: values["state"] for label, values in pool.get_host_stats().items()}


def host_stat(pool: ConnectionPool[FakeConnection], label: str, key: str) -> object:
    return pool.get_host_stats()[label][key]
