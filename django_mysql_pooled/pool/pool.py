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
import time
import traceback
import weakref
from collections.abc import Callable
from threading import current_thread
from typing import Any, ClassVar

from django_mysql_pooled.pool import stats
from django_mysql_pooled.pool.checkout import LOST, READY, CheckoutPoolState, Holder
from django_mysql_pooled.pool.errors import ErrorClasses
from django_mysql_pooled.pool.hosted import HostError
from django_mysql_pooled.pool.hosts import HostSet
from django_mysql_pooled.pool.state import LIFETIME_JITTER, C
from django_mysql_pooled.pool.validation import MIN_RESET_TIME

__all__ = ["LIFETIME_JITTER", "MIN_RESET_TIME", "ConnectionPool"]


class ConnectionPool(CheckoutPoolState[C]):
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
        wait = self.timeout if timeout is None else timeout
        if not self._opened:
            self.open()
        # *owner* stays referenced by this call until it returns: while the checkout is
        # registered but not yet validated, maintenance cannot take it for abandoned.
        holder: Holder = (
            None if owner is None else weakref.ref(owner),
            current_thread(),
            None if self.leak_timeout is None else traceback.extract_stack(sys._getframe(1)),  # from the caller on
        )
        with self._lock:  # the fast path's only hold: take the most recently returned and register it
            # The clock is read in this hold: a reading taken before a stall (GIL, scheduling) would
            # hand out a connection idle past validation_window unpinged (security review F-2).
            now = self._clock()
            entry = self._idle.pop() if self._idle and not self._closed else None
            state = "" if entry is None else self._take_locked(entry, now, now + wait, holder)
        if entry is not None and state is READY:
            alive = self._fast_alive
            if alive is None or alive(entry.conn):
                return entry.conn
            state = LOST
        return self._checkout(entry, state, now, wait, holder)

    def was_reused(self, conn: C) -> bool:
        """Whether *conn*, checked out now, was reset by the pool (it served an earlier checkout)."""
        entry = self._in_use.get(id(conn))
        return entry is not None and not entry.fresh

    # -- checkin ----------------------------------------------------------

    def putconn(  # long: the checkin's first (often only) hold, every branch inline on the hot path
        self, conn: C, *, broken: bool = False, owner: object | None = None
    ) -> None:
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
        resetting = False
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
            else:  # reset here: the second hold counts it and keeps the connection (validation.py)
                resetting = self._start_reset_locked(entry, now)
        if resetting:
            self._reset_and_keep(entry, now)
        else:
            self._discard(entry, stats.CLOSES_BROKEN if broken else stats.CLOSES_LIFETIME)
