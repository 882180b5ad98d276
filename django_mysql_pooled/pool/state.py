"""The pool's bookkeeping: entries, waiters, slots and counters under one lock.

An entry per open connection, a waiter per blocked checkout, the slot count
(``max_size`` is a cap on open connections *plus* slots reserved by threads
opening one), the statistics, and the primitives that move an entry or a
slot on. The policy (which connection a checkout gets, when one is checked,
reset or closed) is layered on top: ``validation.py``, ``maintenance.py``,
``pool.py``.
"""

from __future__ import annotations

import logging
import random
import threading
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django_mysql_pooled.pool import stats
from django_mysql_pooled.pool.hosts import UP, Host

__all__ = ["CLOSED", "LIFETIME_JITTER", "PENDING", "SLOT", "Entry", "PoolState", "Waiter"]

logger = logging.getLogger(__name__)

C = TypeVar("C")

#: Fraction of ``max_lifetime`` by which each connection's lifetime is
#: shortened at random, so connections opened together do not expire together.
LIFETIME_JITTER = 0.05

PENDING = object()  # a waiter's result before it is served
SLOT = object()  # the waiter may open a new connection itself
CLOSED = object()  # the pool was closed while it waited


class Entry(Generic[C]):
    """One open connection and its timestamps (clock seconds)."""

    __slots__ = (
        "checked_out_at",
        "conn",
        "created_at",
        "expires_at",
        "fresh",
        "host",
        "interrupted",
        "leak_reported",
        "owner",
        "reset_deadline",
        "retired",
        "stack",
        "thread",
        "used_at",
    )

    def __init__(self, conn: C, now: float, lifetime: float) -> None:
        self.conn = conn
        self.created_at = now
        self.expires_at = now + lifetime
        self.used_at = now
        self.checked_out_at = now
        self.fresh = True  # not reset since it was opened
        self.leak_reported = False
        self.stack: traceback.StackSummary | None = None
        self.reset_deadline = 0.0  # the checkout's deadline while its reset runs
        self.interrupted = False  # the guard cut the reset off at that deadline
        self.owner: weakref.ref[Any] | None = None  # what checked it out (a Django wrapper)
        self.thread: threading.Thread | None = None  # the thread that checked it out
        self.host: Host | None = None  # its server, in a pool with several hosts
        self.retired = False  # closed at checkin: its host is down, or an earlier one is up again (hosts.py)


class Waiter:
    """A thread waiting for a connection: blocks on a lock held at creation."""

    __slots__ = ("lock", "result", "since")

    def __init__(self, now: float) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.result: Any = PENDING
        self.since = now

    def serve(self, result: object) -> None:
        """Hand over an :class:`Entry`, :data:`SLOT` or :data:`CLOSED`; call under the pool's lock."""
        self.result = result
        self.lock.release()


class PoolState(Generic[C]):
    """Entries, waiters, slots and counters, guarded by one lock."""

    def __init__(
        self,
        connect: Callable[[float | None], C],
        close: Callable[[C], None],
        *,
        name: str,
        min_size: int,
        max_size: int,
        max_lifetime: float,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self.min_size, self.max_size = min_size, max_size
        self.max_lifetime = max_lifetime
        self._connect, self._close_conn, self._clock = connect, close, clock
        self._lock = threading.Lock()
        self._idle: deque[Entry[C]] = deque()  # the right end is the most recently returned
        self._in_use: dict[int, Entry[C]] = {}
        self._waiters: deque[Waiter] = deque()
        self._nconns = 0  # open connections plus slots reserved for opening
        self._opening = 0  # connects in progress (each holds one of those slots)
        #: At most this many connects at once: under a burst, threads wait for a
        #: returned connection or a finished connect instead of each opening
        #: its own (HikariCP's "spike" lesson; psycopg_pool grows by workers).
        self.max_connecting = 2
        self._opened = False
        self._closed = False
        self._stats: dict[str, float] = dict.fromkeys(stats.COUNTERS, 0)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return (
            f"<{type(self).__name__} {self.name!r} {state} size={self._nconns} "
            f"idle={len(self._idle)} in_use={len(self._in_use)} waiting={len(self._waiters)}>"
        )

    # -- moving entries and slots on ----------------------------------------

    def _open_entry(self, deadline: float) -> Entry[C]:
        """Open a connection in the calling thread using an already reserved slot."""
        started = self._clock()
        try:
            conn, host = self._dial(deadline)
        except BaseException:
            with self._lock:
                self._stats[stats.CONNECTIONS_ERRORS] += 1
                self._opening -= 1
                self._release_slot_locked()
                self._grow_locked()
            raise
        now = self._clock()
        with self._lock:
            self._stats[stats.CONNECTIONS_NUM] += 1
            self._stats[stats.CONNECTIONS_MS] += (now - started) * 1000
            self._opening -= 1
            self._grow_locked()
        lifetime = self.max_lifetime * (1.0 - random.random() * LIFETIME_JITTER)  # noqa: S311
        entry = Entry(conn, now, lifetime)
        entry.host = host
        return entry

    def _dial(self, deadline: float) -> tuple[C, Host | None]:
        """Open a server connection by *deadline* (clock seconds); ``(connection, its host)``.

        One server here; several in ``hosted.py`` (which counts the connection in ``host.open``).
        """
        return self._connect(max(deadline - self._clock(), 0.0)), None

    def _keep_locked(self, entry: Entry[C], now: float) -> bool:
        """Hand *entry* to the first waiter or make it idle, unless expired or closed."""
        if self._closed or now >= entry.expires_at:
            return False
        if entry.host is not None and self._retire_locked(entry.host):
            entry.retired = True
            return False
        entry.used_at = now
        if self._waiters:
            self._waiters.popleft().serve(entry)
        else:
            self._idle.append(entry)
        return True

    def _abandon(self, waiter: Waiter) -> None:
        """Pass on what an interrupted waiter was (or was about to be) served."""
        with self._lock:
            result = waiter.result
            self._stats[stats.REQUESTS_WAIT_MS] += (self._clock() - waiter.since) * 1000
            if result is PENDING:
                self._waiters.remove(waiter)
            elif result is SLOT:
                self._opening -= 1
                self._release_slot_locked()
            elif result is CLOSED or self._keep_locked(result, self._clock()):
                return
        if isinstance(result, Entry):
            self._discard(result, stats.CLOSES_LIFETIME)

    def _discard(self, entry: Entry[C], reason: str | None, *, keep_slot: bool = False) -> None:
        """Close *entry*, count *reason* (unless the pool is closed) and free its slot."""
        self._safe_close(entry.conn)
        with self._lock:
            if entry.host is not None:
                entry.host.open -= 1
                if entry.retired and reason == stats.CLOSES_LIFETIME:
                    reason = stats.CLOSES_FAILBACK if entry.host.state == UP else stats.CLOSES_HOST_DOWN
            if reason is not None and not self._closed:
                self._stats[reason] = self._stats.get(reason, 0) + 1
            if not keep_slot:
                self._release_slot_locked()

    def _retire_locked(self, host: Host) -> bool:
        """Whether a connection to *host* is closed instead of kept (several hosts: ``hosted.py``)."""
        return False

    def _release_slot_locked(self) -> None:
        """Give a freed slot to the first waiter to open a connection with, or drop it.

        Call with the lock held. The slot is dropped when ``max_connecting``
        connects already run: their completion grows the pool again.
        """
        if self._waiters and not self._closed and self._opening < self.max_connecting:
            self._opening += 1
            self._waiters.popleft().serve(SLOT)
        else:
            self._nconns -= 1

    def _grow_locked(self) -> None:
        """Let waiters open connections while below ``max_size`` and ``max_connecting``."""
        while (
            self._waiters and not self._closed and self._nconns < self.max_size and self._opening < self.max_connecting
        ):
            self._nconns += 1
            self._opening += 1
            self._waiters.popleft().serve(SLOT)

    def _timeout_message(self, waited: float, wait: float) -> str:
        return (
            f"could not get a connection for database {self.name!r} within {waited:.3f} s "
            f"(timeout={wait} s): max_size={self.max_size}, in use={len(self._in_use)}, "
            f"idle={len(self._idle)}, waiting={len(self._waiters)}. Raise OPTIONS['pool']['max_size'] "
            "or ['timeout'], or return connections sooner."
        )

    def _safe_close(self, conn: C) -> None:
        try:
            self._close_conn(conn)
        except Exception:  # noqa: BLE001 - closing a dead connection may fail
            logger.debug("pool %r: error closing a connection", self.name, exc_info=True)

    # -- statistics ---------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Return the pool's sizes and counters (a flat ``dict[str, int]``).

        The keys are defined in :mod:`django_mysql_pooled.pool.stats`
        (psycopg_pool's names where one exists; ``*_ms`` values are
        milliseconds).
        """
        with self._lock:
            return self._stats_locked()

    def pop_stats(self) -> dict[str, int]:
        """Return :meth:`get_stats` and reset the counters (not the sizes)."""
        with self._lock:
            current = self._stats_locked()
            self._stats = dict.fromkeys(self._stats, 0.0)  # keep every key seen: series must not vanish
        return current

    def _stats_locked(self) -> dict[str, int]:
        # *_ms counters add up float milliseconds: sub-millisecond resets count.
        current = {key: int(value) for key, value in self._stats.items()}
        current[stats.POOL_MIN] = self.min_size
        current[stats.POOL_MAX] = self.max_size
        current[stats.POOL_SIZE] = self._nconns
        current[stats.POOL_AVAILABLE] = len(self._idle)
        current[stats.CONNECTIONS_IN_USE] = len(self._in_use)
        current[stats.REQUESTS_WAITING] = len(self._waiters)
        waited = self._clock() - self._waiters[0].since if self._waiters else 0.0
        current[stats.REQUESTS_LONGEST_WAIT_MS] = int(waited * 1000)
        return current

    def count(self, key: str, value: int = 1) -> None:
        """Add *value* to counter *key*, one of :mod:`~django_mysql_pooled.pool.stats`'s (used by
        the Django side and cancellation)."""
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + value
