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
  within the same deadline (the checkout keeps its place: it opens the
  replacement itself), so a broken connection is never handed out.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

from django_mysql_pooled.pool import stats
from django_mysql_pooled.pool.errors import ErrorClasses
from django_mysql_pooled.pool.hosted import HostError
from django_mysql_pooled.pool.hosts import HostSet
from django_mysql_pooled.pool.maintenance import MaintainedPoolState
from django_mysql_pooled.pool.state import CLOSED, LIFETIME_JITTER, PENDING, SLOT, C, Entry, Waiter
from django_mysql_pooled.pool.validation import MIN_RESET_TIME, Outcome

__all__ = ["LIFETIME_JITTER", "MIN_RESET_TIME", "ConnectionPool"]


class ConnectionPool(MaintainedPoolState[C]):
    """A process-wide pool of connections shared by all threads.

    :param connect: ``connect(timeout)`` opens a connection; *timeout* is the
        seconds left before the checkout's deadline (the pool's ``timeout``
        for a background connect).
    :param reset: resets a used connection and returns the method used (a
        stats key suffix); raises on failure, and the connection is discarded.
    :param reset_on: ``"checkin"``: reset when the connection is returned
        (what the checkout left behind is released at once) and validate it
        at checkout; ``"checkout"``: reset at checkout (the reset is the
        validation; state lingers while idle).
    :param alive: with ``reset_on="checkin"``: a zero-round-trip liveness
        check for a connection returned less than *validation_window*
        seconds ago (``False``: discard it).
    :param check: with ``reset_on="checkin"``: a round-trip check (a ping)
        for a connection idle longer; raises when the connection is unusable.
    :param validation_window: seconds (HikariCP's ``aliveBypassWindowMs``).
    :param shared: ``shared(owner)`` says whether an owner may be used by
        threads other than the one that checked out (a checkout whose thread
        ended is then not reclaimed while the owner lives).
    :param close: closes a connection (errors are logged, never raised).
    :param detach: drops a connection inherited through ``fork()``.
    :param name: a label for logs, thread names and messages (the alias).
    :param clock: a monotonic clock in seconds (injectable for tests).
    :param num_workers: with ``reset_on="checkin"``: threads that reset
        returned connections, so that :meth:`putconn` returns at once
        (psycopg_pool's name); ``0``: the returning thread resets.
    :param hosts: several servers (``hosted.py``): ``connect_host(label,
        timeout)`` opens a connection to one; ``host_error(exc)`` says
        whether an error makes its host unusable (a reason, or ``None``).
    :raises ValueError: inconsistent sizes or an unknown *reset_on*.
    """

    #: The exception classes raised (the Django backend substitutes subclasses
    #: of the driver's ``OperationalError``).
    errors: ClassVar[ErrorClasses] = ErrorClasses()

    def __init__(  # long: the documented signature, forwarded by keyword to the layers below
        self,
        connect: Callable[[float | None], C],
        *,
        reset: Callable[[C], str] | None = None,
        reset_on: str = "checkout",
        alive: Callable[[C], bool] | None = None,
        check: Callable[[C], object] | None = None,
        validation_window: float = 0.5,
        shared: Callable[[Any], bool] | None = None,
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
        interrupt: Callable[[C], None] | None = None,
        guard_interval: float = 0.1,
        num_workers: int = 0,
        hosts: HostSet | None = None,
        connect_host: Callable[[str, float], C] | None = None,
        host_error: HostError | None = None,
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}")
        if reset_on not in ("checkin", "checkout"):
            raise ValueError(f"reset_on must be 'checkin' or 'checkout', got {reset_on!r}")
        super().__init__(
            connect,
            close,
            name=name,
            min_size=min_size,
            max_size=max_size,
            max_lifetime=max_lifetime,
            clock=clock,
            reset=reset,
            reset_on=reset_on,
            alive=alive,
            check=check,
            validation_window=validation_window,
            interrupt=interrupt,
            timeout=timeout,
            max_idle=max_idle,
            leak_timeout=leak_timeout,
            maintenance_interval=maintenance_interval,
            guard_interval=guard_interval,
            num_workers=num_workers,
            shared=shared,
            detach=detach,
            hosts=hosts,
            connect_host=connect_host,
            host_error=host_error,
        )
        self.max_waiting = max_waiting

    # -- checkout ---------------------------------------------------------

    def getconn(self, timeout: float | None = None, *, owner: object | None = None) -> C:
        """Check a connection out: reset since its last use, validated now, owned by the caller alone.

        :param timeout: seconds to wait; defaults to the pool's ``timeout``.
        :param owner: what holds the connection (a Django wrapper), weakly
            referenced: when it is garbage-collected, or the calling thread
            ends while it is not ``shared``, without :meth:`putconn`, the
            pool reclaims the connection (counted in ``leaks_detected``).
        :raises PoolTimeout: no connection within *timeout*.
        :raises TooManyRequests: ``max_waiting`` threads are already waiting.
        :raises PoolClosed: the pool is closed.
        :raises MySQLdb.Error: opening a new connection failed (the server's
            own error: bad credentials, unknown database, too many connections).
        """
        started = self._clock()
        wait = self.timeout if timeout is None else timeout
        if not self._opened:
            self.open()
        entry = self._checkout(started, started + wait, wait)
        entry.checked_out_at = self._clock()
        entry.leak_reported = False
        entry.owner = None if owner is None else weakref.ref(owner)
        entry.thread = threading.current_thread()
        if self.leak_timeout is not None:
            entry.stack = traceback.extract_stack(sys._getframe(1))  # from the caller on
        with self._lock:
            self._in_use[id(entry.conn)] = entry
            self._stats[stats.REQUESTS_NUM] += 1
            if entry.checked_fast:
                entry.checked_fast = False
                self._stats[stats.CHECKS_FAST] += 1
        return entry.conn

    def _checkout(self, started: float, deadline: float, wait: float) -> Entry[C]:
        """Take an idle connection and validate it, or open one; a connection
        that fails validation is closed and replaced by the same checkout."""
        replacing = False  # whether this checkout holds a discarded connection's slot
        while True:
            entry = self._acquire(deadline, started, wait, replacing)
            if entry is None:
                return self._open_for_checkout(deadline, replacing)
            outcome = self._validate(entry, deadline)
            if outcome is Outcome.OK:
                return entry
            if outcome is Outcome.CUT_OFF:
                with self._lock:
                    self._stats[stats.REQUESTS_TIMEOUTS] += 1
                    self._stats[stats.REQUESTS_ERRORS] += 1
                raise self.errors.timeout(self._timeout_message(self._clock() - started, wait))
            replacing = True

    def _open_for_checkout(self, deadline: float, replacing: bool) -> Entry[C]:
        try:
            entry = self._open_entry(deadline)
        except BaseException:
            self.count(stats.REQUESTS_ERRORS)
            raise
        if replacing:  # the reset ladder's last rung: a new connection replaced the lost one
            self.count(stats.RESETS_RECONNECT)
        return entry

    def was_reused(self, conn: C) -> bool:
        """Whether *conn*, checked out now, was reset by the pool (it served an earlier checkout)."""
        entry = self._in_use.get(id(conn))
        return entry is not None and not entry.fresh

    def _acquire(self, deadline: float, started: float, wait: float, slot: bool) -> Entry[C] | None:
        """Return an idle entry, or ``None`` when the caller has a slot to open one."""
        while True:
            with self._lock:
                if self._closed:
                    if slot:
                        self._nconns -= 1
                    raise self.errors.closed(f"the connection pool for database {self.name!r} is closed")
                if self._idle:
                    if slot:
                        self._release_slot_locked()
                    return self._idle.pop()
                if slot:
                    self._opening += 1
                    return None
                if self._nconns < self.max_size and self._opening < self.max_connecting:
                    self._nconns += 1
                    self._opening += 1
                    return None
                abandoned = self._take_abandoned_locked()
                if not abandoned:
                    return self._wait_locked_then(deadline, started, wait)
            self._reclaim(abandoned)  # closed, their slots free: try again

    def _wait_locked_then(self, deadline: float, started: float, wait: float) -> Entry[C] | None:
        """Queue and wait to be served (called and returning with the lock held; released while waiting)."""
        if self.max_waiting and len(self._waiters) >= self.max_waiting:
            self._stats[stats.REQUESTS_REJECTED] += 1
            self._stats[stats.REQUESTS_ERRORS] += 1
            raise self.errors.too_many_requests(
                f"database {self.name!r}: too many requests waiting for a connection "
                f"({len(self._waiters)} waiting, max_waiting={self.max_waiting}); raise "
                "OPTIONS['pool']['max_waiting'] or ['max_size']"
            )
        waiter = Waiter(self._clock())
        self._waiters.append(waiter)
        self._stats[stats.REQUESTS_QUEUED] += 1
        self._lock.release()
        try:
            remaining = deadline - self._clock()
            try:
                if remaining > 0:
                    waiter.lock.acquire(timeout=remaining)
            except BaseException:
                self._abandon(waiter)
                raise
        finally:
            self._lock.acquire()
        result = waiter.result
        self._stats[stats.REQUESTS_WAIT_MS] += (self._clock() - waiter.since) * 1000
        if result is PENDING:
            self._waiters.remove(waiter)
            self._stats[stats.REQUESTS_TIMEOUTS] += 1
            self._stats[stats.REQUESTS_ERRORS] += 1
            raise self.errors.timeout(self._timeout_message(self._clock() - started, wait))
        if result is CLOSED:
            raise self.errors.closed(f"the connection pool for database {self.name!r} was closed while waiting")
        return None if result is SLOT else result

    # -- checkin ----------------------------------------------------------

    def putconn(self, conn: C, *, broken: bool = False, owner: object | None = None) -> None:
        """Return a connection checked out with :meth:`getconn`.

        With ``reset_on="checkin"`` the connection is reset now (what the
        checkout left behind, locks included, is released at once): by a
        return worker (*num_workers*), or in the calling thread when they are
        all busy; a failed reset closes it. Never raises for that.

        :param broken: close it instead of keeping it (errors made it unusable).
        :param owner: the *owner* given to :meth:`getconn`.
        :raises ValueError: *conn* is not checked out from this pool (by *owner*):
            e.g. the pool reclaimed it from a thread that had ended.
        """
        now = self._clock()
        with self._lock:
            entry = self._in_use.get(id(conn))
            if entry is None or (owner is not None and (entry.owner is None or entry.owner() is not owner)):
                raise ValueError(f"connection {conn!r} is not checked out from pool {self.name!r} by {owner!r}")
            del self._in_use[id(conn)]
            self._stats[stats.USAGE_MS] += (now - entry.checked_out_at) * 1000
            entry.stack = entry.owner = entry.thread = None
            if broken:
                self._stats[stats.RETURNS_BAD] += 1
            elif entry.host is not None and self._retire_locked(entry.host):
                entry.retired = True  # closed without a reset (hosts.py)
            elif not self.resets_on_checkin:
                if self._keep_locked(entry, now):
                    return
            elif (
                self._return_workers
                and not self._closed
                and self._pending_returns_locked() < 2 * len(self._return_workers)
            ):
                self._returning[id(entry)] = entry  # a worker resets it (returns.py)
                self._return_queue.put(entry)
                return
        if broken or entry.retired or not self.resets_on_checkin:
            self._discard(entry, stats.CLOSES_BROKEN if broken else stats.CLOSES_LIFETIME)
        else:
            self._reset_and_keep(entry)
