"""A thread-safe connection pool that knows nothing of Django.

The pool is given callables: ``connect`` opens a connection, ``reset`` resets
(and thereby health-checks) a reused one, ``close`` closes one, ``detach``
drops one inherited through ``fork()`` without touching the parent's session.
It applies psycopg_pool's policy names (``min_size``, ``max_size``,
``timeout``, ``max_waiting``, ``max_lifetime``, ``max_idle``) with these rules:

* checkout takes the most recently returned idle connection (LIFO keeps hot
  connections hot and lets surplus ones reach ``max_idle``);
* otherwise, below ``max_size``, it opens a new connection in the calling
  thread;
* otherwise it waits in FIFO order; a returning connection is handed over
  directly to the first waiter;
* an expired connection, or one whose reset fails, is closed and replaced
  within the same deadline, so a broken connection is never handed out.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from django_mysql_pooled.errors import PoolClosed, PoolTimeout, TooManyRequests

__all__ = ["ConnectionPool"]

logger = logging.getLogger("django_mysql_pooled")

C = TypeVar("C")

#: Fraction of ``max_lifetime`` by which each connection's lifetime is
#: shortened at random, so connections opened together do not expire together.
LIFETIME_JITTER = 0.05

_COUNTERS = (
    "requests_num",
    "requests_queued",
    "requests_wait_ms",
    "requests_errors",
    "requests_timeouts",
    "requests_rejected",
    "usage_ms",
    "returns_bad",
    "connections_num",
    "connections_ms",
    "connections_errors",
    "connections_lost",
    "resets_num",
    "resets_ms",
    "resets_failed",
    "resets_reset_connection",
    "resets_change_user",
    "resets_reconnect",
    "closes_lifetime",
    "closes_idle",
    "closes_broken",
    "returns_rolled_back",
    "leaks_detected",
)


class _Entry(Generic[C]):
    __slots__ = ("checked_out_at", "conn", "created_at", "expires_at", "fresh", "leak_reported", "stack", "used_at")

    def __init__(self, conn: C, now: float, lifetime: float) -> None:
        self.conn = conn
        self.created_at = now
        self.expires_at = now + lifetime
        self.used_at = now
        self.checked_out_at = now
        self.fresh = True
        self.leak_reported = False
        self.stack: traceback.StackSummary | None = None


class _Waiter:
    """A thread waiting for a connection: blocks on a lock held at creation."""

    __slots__ = ("lock", "result", "since")

    def __init__(self, now: float) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.result: Any = _PENDING
        self.since = now


_PENDING = object()
_SLOT = object()  # the waiter may open a new connection itself
_CLOSED = object()


class ConnectionPool(Generic[C]):
    """A process-wide pool of connections shared by all threads.

    :param connect: ``connect(timeout)`` opens a connection; *timeout* is the
        seconds left before the checkout's deadline (``None`` in background).
    :param reset: resets a reused connection and returns the method used (a
        stats key suffix); raises on failure, and the connection is discarded.
    :param close: closes a connection (errors are logged, never raised).
    :param detach: drops a connection inherited through ``fork()``.
    :param name: a label for logs, thread names and messages (the alias).
    :param clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        connect: Callable[[float | None], C],
        *,
        reset: Callable[[C], str] | None = None,
        close: Callable[[C], None],
        detach: Callable[[C], None] | None = None,
        name: str = "default",
        min_size: int = 0,
        max_size: int = 10,
        timeout: float = 30.0,
        max_waiting: int = 0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        leak_timeout: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        maintenance_interval: float = 1.0,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}")
        self.name = name
        self.min_size, self.max_size = min_size, max_size
        self.timeout, self.max_waiting = timeout, max_waiting
        self.max_lifetime, self.max_idle = max_lifetime, max_idle
        self.leak_timeout = leak_timeout
        self._connect, self._reset, self._close_conn = connect, reset, close
        self._detach = detach or close
        self._clock = clock
        periods = [p / 2 for p in (max_idle, max_lifetime, leak_timeout or 0.0) if p > 0]
        self._interval = max(0.01, min([maintenance_interval, *periods]))
        self._lock = threading.Lock()
        self._idle: deque[_Entry[C]] = deque()
        self._in_use: dict[int, _Entry[C]] = {}
        self._waiters: deque[_Waiter] = deque()
        self._nconns = 0  # open connections plus slots reserved for opening
        self._opened = False
        self._closed = False
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._stats = dict.fromkeys(_COUNTERS, 0)
        self._fill_backoff = 0.0
        self._fill_after = 0.0
        #: Callables run with the pool by the maintenance thread after each
        #: round (about once a second) and once at close, e.g. stats publishers.
        self.hooks: list[Callable[[ConnectionPool[C]], None]] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._opened else "new"
        return (
            f"<{type(self).__name__} {self.name!r} {state} size={self._nconns} "
            f"idle={len(self._idle)} in_use={len(self._in_use)} waiting={len(self._waiters)}>"
        )

    # -- life cycle -----------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def pid(self) -> int:
        """The process the pool was created in."""
        return self._pid

    def open(self) -> None:
        """Start the background worker (idempotent); called by the first checkout."""
        with self._lock:
            if self._opened or self._closed:
                return
            self._opened = True
        logger.info("pool %r opened: min_size=%d max_size=%d", self.name, self.min_size, self.max_size)
        self._worker = threading.Thread(
            target=_maintain,
            args=(weakref.ref(self), self._stop, self._interval),
            name=f"django_mysql_pooled-{self.name}-maintenance",
            daemon=True,
        )
        self._worker.start()

    def close(self, timeout: float = 5.0) -> None:
        """Close idle connections, fail waiters with :class:`PoolClosed`, stop the worker.

        Connections checked out now are closed when they are returned.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._nconns -= len(idle)
            waiters = list(self._waiters)
            self._waiters.clear()
        for waiter in waiters:
            waiter.result = _CLOSED
            waiter.lock.release()
        for entry in idle:
            self._safe_close(entry.conn)
        self._stop.set()
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)
        self._run_hooks()
        logger.info("pool %r closed", self.name)

    def _run_hooks(self) -> None:
        for hook in list(self.hooks):
            try:
                hook(self)
            except Exception:  # noqa: BLE001 - a hook must not break the pool
                logger.warning("pool %r: hook %r failed", self.name, hook, exc_info=True)

    def forget_after_fork(self) -> None:
        """In a forked child: drop every inherited connection without ``COM_QUIT``.

        The pool is then closed; the child builds a new one.
        """
        entries = list(self._idle) + list(self._in_use.values())
        self._lock = threading.Lock()
        self._idle.clear()
        self._in_use.clear()
        self._waiters.clear()
        self._nconns = 0
        self._closed = True
        self._stop.set()
        for entry in entries:
            try:
                self._detach(entry.conn)
            except Exception:  # noqa: BLE001 - must never break the child
                logger.warning("pool %r: could not detach an inherited connection", self.name, exc_info=True)

    # -- checkout ---------------------------------------------------------

    def getconn(self, timeout: float | None = None) -> C:
        """Check a connection out: reset, healthy and owned by the caller alone.

        :param timeout: seconds to wait; defaults to the pool's ``timeout``.
        :raises PoolTimeout: no connection within *timeout*.
        :raises TooManyRequests: ``max_waiting`` threads are already waiting.
        :raises PoolClosed: the pool is closed.
        :raises MySQLdb.Error: opening a new connection failed (the server's
            own error: bad credentials, unknown database, too many connections).
        """
        started = self._clock()
        deadline = started + (self.timeout if timeout is None else timeout)
        if not self._opened:
            self.open()
        while True:
            entry = self._acquire(deadline, started)
            if entry is None:
                entry = self._open_entry(deadline)
                break
            if self._usable(entry):
                break
        entry.checked_out_at = now = self._clock()
        if self.leak_timeout is not None:
            entry.stack = traceback.extract_stack()
        with self._lock:
            self._in_use[id(entry.conn)] = entry
            self._stats["requests_num"] += 1
            self._stats["requests_wait_ms"] += int((now - started) * 1000)
        return entry.conn

    def was_reused(self, conn: C) -> bool:
        """Whether *conn*, checked out now, served an earlier checkout."""
        entry = self._in_use.get(id(conn))
        return entry is not None and not entry.fresh

    def _acquire(self, deadline: float, started: float) -> _Entry[C] | None:
        """Return an idle entry, or ``None`` when the caller got a slot to open one."""
        with self._lock:
            if self._closed:
                raise PoolClosed(f"the connection pool for database {self.name!r} is closed")
            if self._idle:
                return self._idle.pop()
            if self._nconns < self.max_size:
                self._nconns += 1
                return None
            if self.max_waiting and len(self._waiters) >= self.max_waiting:
                self._stats["requests_rejected"] += 1
                self._stats["requests_errors"] += 1
                raise TooManyRequests(
                    f"database {self.name!r}: {len(self._waiters)} requests are already waiting "
                    f"for a connection (max_waiting={self.max_waiting})"
                )
            waiter = _Waiter(self._clock())
            self._waiters.append(waiter)
            self._stats["requests_queued"] += 1
        remaining = deadline - self._clock()
        if remaining > 0:
            waiter.lock.acquire(timeout=remaining)
        with self._lock:
            result = waiter.result
            if result is _PENDING:
                self._waiters.remove(waiter)
                self._stats["requests_timeouts"] += 1
                self._stats["requests_errors"] += 1
                raise PoolTimeout(self._timeout_message(self._clock() - started))
        if result is _CLOSED:
            raise PoolClosed(f"the connection pool for database {self.name!r} was closed while waiting")
        return None if result is _SLOT else result  # type: ignore[no-any-return]

    def _timeout_message(self, waited: float) -> str:
        return (
            f"could not get a connection for database {self.name!r} within {waited:.3f} s "
            f"(timeout={self.timeout} s): max_size={self.max_size}, in use={len(self._in_use)}, "
            f"idle={len(self._idle)}, waiting={len(self._waiters)}. Raise OPTIONS['pool']['max_size'] "
            "or ['timeout'], or return connections sooner."
        )

    def _open_entry(self, deadline: float) -> _Entry[C]:
        """Open a connection in the calling thread using an already reserved slot."""
        started = self._clock()
        try:
            conn = self._connect(max(deadline - started, 0.0))
        except BaseException:
            with self._lock:
                self._stats["connections_errors"] += 1
                self._release_slot_locked()
            raise
        now = self._clock()
        with self._lock:
            self._stats["connections_num"] += 1
            self._stats["connections_ms"] += int((now - started) * 1000)
        return _Entry(conn, now, self._jittered_lifetime())

    def _jittered_lifetime(self) -> float:
        return self.max_lifetime * (1.0 - random.random() * LIFETIME_JITTER)  # noqa: S311

    def _usable(self, entry: _Entry[C]) -> bool:
        """Expire or reset a reused entry; discard it (freeing its slot) when unusable."""
        if self._clock() >= entry.expires_at:
            self._discard(entry, "closes_lifetime")
            return False
        entry.fresh = False
        if self._reset is None:
            return True
        started = self._clock()
        try:
            method = self._reset(entry.conn)
        except Exception as exc:  # noqa: BLE001 - any failure means "do not hand out"
            logger.warning("pool %r: discarding a connection whose reset failed: %s", self.name, exc)
            with self._lock:
                self._stats["resets_failed"] += 1
                self._stats["connections_lost"] += 1
            self._discard(entry, "closes_broken")
            return False
        elapsed = self._clock() - started
        with self._lock:
            self._stats["resets_num"] += 1
            self._stats["resets_ms"] += int(elapsed * 1000)
            key = f"resets_{method}"
            self._stats[key] = self._stats.get(key, 0) + 1
        return True

    # -- checkin ----------------------------------------------------------

    def putconn(self, conn: C, *, broken: bool = False) -> None:
        """Return a connection checked out with :meth:`getconn`.

        :param broken: close it instead of keeping it (errors made it unusable).
        :raises ValueError: *conn* is not checked out from this pool.
        """
        now = self._clock()
        with self._lock:
            entry = self._in_use.pop(id(conn), None)
            if entry is None:
                raise ValueError(f"connection {conn!r} is not checked out from pool {self.name!r}")
            self._stats["usage_ms"] += int((now - entry.checked_out_at) * 1000)
            entry.stack = None
            if not broken and not self._closed and now < entry.expires_at:
                entry.used_at = now
                if self._waiters:
                    waiter = self._waiters.popleft()
                    waiter.result = entry
                    waiter.lock.release()
                else:
                    self._idle.append(entry)
                return
            if broken:
                self._stats["returns_bad"] += 1
        self._discard(entry, "closes_broken" if broken else "closes_lifetime")

    def _discard(self, entry: _Entry[C], reason: str) -> None:
        self._safe_close(entry.conn)
        with self._lock:
            self._stats[reason] += 1
            self._release_slot_locked()

    def _release_slot_locked(self) -> None:
        """Give a freed slot to the first waiter, or drop it. Call with the lock held."""
        if self._waiters and not self._closed:
            waiter = self._waiters.popleft()
            waiter.result = _SLOT
            waiter.lock.release()
        else:
            self._nconns -= 1

    def _safe_close(self, conn: C) -> None:
        try:
            self._close_conn(conn)
        except Exception:  # noqa: BLE001 - closing a dead connection may fail
            logger.debug("pool %r: error closing a connection", self.name, exc_info=True)

    # -- background maintenance --------------------------------------------

    def run_maintenance(self) -> None:
        """Close idle and expired connections, refill ``min_size``, report leaks."""
        now = self._clock()
        expired: list[tuple[_Entry[C], str]] = []
        with self._lock:
            if self._closed:
                return
            keep: deque[_Entry[C]] = deque()
            surplus = self._nconns - self.min_size
            for entry in self._idle:  # oldest-returned first
                if now >= entry.expires_at:
                    expired.append((entry, "closes_lifetime"))
                elif surplus > 0 and now - entry.used_at >= self.max_idle:
                    expired.append((entry, "closes_idle"))
                    surplus -= 1
                else:
                    keep.append(entry)
            self._idle = keep
            leaks = self._find_leaks_locked(now)
        for entry, reason in expired:
            self._discard(entry, reason)
        for entry in leaks:
            stack = "".join(entry.stack.format()) if entry.stack else "(stack not recorded)\n"
            logger.warning(
                "pool %r: a connection has been checked out for %.1f s (leak_timeout=%s s); "
                "checked out at:\n%s",
                self.name,
                now - entry.checked_out_at,
                self.leak_timeout,
                stack,
            )
        self._fill(now)

    def _find_leaks_locked(self, now: float) -> list[_Entry[C]]:
        if self.leak_timeout is None:
            return []
        leaks = []
        for entry in self._in_use.values():
            if not entry.leak_reported and now - entry.checked_out_at >= self.leak_timeout:
                entry.leak_reported = True
                self._stats["leaks_detected"] += 1
                leaks.append(entry)
        return leaks

    def _fill(self, now: float) -> None:
        """Open connections in the background until ``min_size`` are open."""
        while now >= self._fill_after:
            with self._lock:
                if self._closed or self._nconns >= self.min_size:
                    self._fill_backoff = 0.0
                    return
                self._nconns += 1
            try:
                entry = self._open_entry(self._clock() + self.timeout)
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                self._fill_backoff = min(max(self._fill_backoff * 2, 0.1), 10.0)
                self._fill_after = self._clock() + self._fill_backoff * (0.5 + random.random() / 2)  # noqa: S311
                logger.warning("pool %r: could not open a connection to keep min_size: %s", self.name, exc)
                return
            with self._lock:
                if self._waiters and not self._closed:
                    waiter = self._waiters.popleft()
                    waiter.result = entry
                    waiter.lock.release()
                elif not self._closed:
                    self._idle.appendleft(entry)
                    continue
            if self._closed:
                self._discard(entry, "closes_idle")
            now = self._clock()

    # -- statistics ---------------------------------------------------------

    def get_stats(self) -> dict[str, int]:
        """Return the pool's sizes and counters (a flat ``dict[str, int]``).

        Names follow psycopg_pool where one exists; ``*_ms`` values are
        milliseconds. See the statistics reference in the docs.
        """
        with self._lock:
            return self._stats_locked()

    def pop_stats(self) -> dict[str, int]:
        """Return :meth:`get_stats` and reset the counters (not the sizes)."""
        with self._lock:
            stats = self._stats_locked()
            self._stats = dict.fromkeys(_COUNTERS, 0)
        return stats

    def _stats_locked(self) -> dict[str, int]:
        stats = dict(self._stats)
        stats.update(
            pool_min=self.min_size,
            pool_max=self.max_size,
            pool_size=self._nconns,
            pool_available=len(self._idle),
            connections_in_use=len(self._in_use),
            requests_waiting=len(self._waiters),
            requests_longest_wait_ms=int((self._clock() - self._waiters[0].since) * 1000) if self._waiters else 0,
        )
        return stats

    def count(self, key: str, value: int = 1) -> None:
        """Add *value* to counter *key* (used by the Django side and cancellation)."""
        with self._lock:
            self._stats[key] = self._stats.get(key, 0) + value


def _maintain(ref: weakref.ref[ConnectionPool[Any]], stop: threading.Event, interval: float) -> None:
    """Body of the maintenance thread: holds the pool only while working on it."""
    while True:
        pool = ref()
        if pool is None or pool.closed:
            return
        try:
            pool.run_maintenance()
        except Exception:  # noqa: BLE001 - the worker must survive anything
            logger.exception("pool %r: maintenance failed", pool.name)
        pool._run_hooks()
        del pool
        if stop.wait(interval):
            return
