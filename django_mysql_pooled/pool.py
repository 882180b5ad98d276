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

import logging
import os
import random
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from django_mysql_pooled.errors import PoolClosed, PoolTimeout, TooManyRequests
from django_mysql_pooled.pool_state import (
    CLOSED,
    LIFETIME_JITTER,
    PENDING,
    SLOT,
    C,
    Entry,
    PoolState,
    Waiter,
    guard,
    maintain,
)

__all__ = ["LIFETIME_JITTER", "MIN_RESET_TIME", "ConnectionPool"]

#: Seconds a reset is always allowed before the guard may cut it off, however
#: little of the checkout's ``timeout`` is left.
MIN_RESET_TIME = 1.0

logger = logging.getLogger("django_mysql_pooled")


class ConnectionPool(PoolState[C]):
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
    """

    def __init__(
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
    ) -> None:
        if not 0 <= min_size <= max_size or max_size < 1:
            raise ValueError(f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}")
        if reset_on not in ("checkin", "checkout"):
            raise ValueError(f"reset_on must be 'checkin' or 'checkout', got {reset_on!r}")
        super().__init__(connect, close, name, min_size, max_size, max_lifetime, clock)
        self.timeout, self.max_waiting = timeout, max_waiting
        self.max_idle, self.leak_timeout = max_idle, leak_timeout
        self._reset = reset
        #: Whether :meth:`putconn` resets (``reset_on="checkin"``).
        self.resets_on_checkin = reset is not None and reset_on == "checkin"
        self._alive, self._check = alive, check
        self.validation_window = validation_window
        self._shared = shared
        self._detach = detach or close
        self._interrupt = interrupt if (reset is not None or check is not None) else None
        self._guard_interval = guard_interval
        self._resetting: dict[int, Entry[C]] = {}  # resets in progress, for the guard
        periods = [p / 2 for p in (max_idle, max_lifetime, leak_timeout or 0.0) if p > 0]
        self._interval = max(0.01, min([maintenance_interval, *periods]))
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._fill_backoff = 0.0  # seconds; doubles per failed background connect
        self._fill_after = 0.0  # clock time before which the background fill does not retry
        #: Callables run with the pool by the maintenance thread after each
        #: round (about once a second) and once at close, e.g. stats publishers.
        self.hooks: list[Callable[[ConnectionPool[C]], None]] = []

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
            target=maintain,
            args=(weakref.ref(self), self._stop, self._interval),
            name=f"django_mysql_pooled-{self.name}-maintenance",
            daemon=True,
        )
        self._worker.start()
        if self._interrupt is not None:
            threading.Thread(
                target=guard,
                args=(weakref.ref(self), self._stop, self._guard_interval),
                name=f"django_mysql_pooled-{self.name}-guard",
                daemon=True,
            ).start()

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
            # Served under the lock: a waiter timing out now must not find itself pending.
            while self._waiters:
                self._waiters.popleft().serve(CLOSED)
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
        self._lock = threading.Lock()  # the parent's may have been held at fork()
        self._idle.clear()
        self._in_use.clear()
        self._waiters.clear()
        self._nconns = self._opening = 0
        self._closed = True
        self._stop = threading.Event()  # the inherited one's lock may be held too
        self._stop.set()
        for entry in entries:
            try:
                self._detach(entry.conn)
            except Exception:  # noqa: BLE001 - must never break the child
                logger.warning("pool %r: could not detach an inherited connection", self.name, exc_info=True)

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
        deadline = started + wait
        if not self._opened:
            self.open()
        slot = False  # whether this checkout holds a slot (a discarded connection's)
        while True:
            entry = self._acquire(deadline, started, wait, slot)
            if entry is None:
                try:
                    entry = self._open_entry(deadline)
                except BaseException:
                    self.count("requests_errors")
                    raise
                if slot:  # the reset ladder's last rung: a new connection replaced the lost one
                    self.count("resets_reconnect")
                break
            usable = self._usable(entry, deadline)
            if usable is None:  # the guard cut the reset off at the deadline
                with self._lock:
                    self._stats["requests_timeouts"] += 1
                    self._stats["requests_errors"] += 1
                raise PoolTimeout(self._timeout_message(self._clock() - started, wait))
            if usable:
                break
            slot = True
        entry.checked_out_at = self._clock()
        entry.leak_reported = False
        entry.owner = None if owner is None else weakref.ref(owner)
        entry.thread = threading.current_thread()
        if self.leak_timeout is not None:
            entry.stack = traceback.extract_stack(sys._getframe(1))  # from the caller on
        with self._lock:
            self._in_use[id(entry.conn)] = entry
            self._stats["requests_num"] += 1
        return entry.conn

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
                    raise PoolClosed(f"the connection pool for database {self.name!r} is closed")
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
            self._reclaim(abandoned)  # then try again: they are idle (or their slots free) now

    def _wait_locked_then(self, deadline: float, started: float, wait: float) -> Entry[C] | None:
        """Queue and wait to be served (called and returning with the lock held; released while waiting)."""
        if self.max_waiting and len(self._waiters) >= self.max_waiting:
            self._stats["requests_rejected"] += 1
            self._stats["requests_errors"] += 1
            raise TooManyRequests(
                f"database {self.name!r}: too many requests waiting for a connection "
                f"({len(self._waiters)} waiting, max_waiting={self.max_waiting}); raise "
                "OPTIONS['pool']['max_waiting'] or ['max_size']"
            )
        waiter = Waiter(self._clock())
        self._waiters.append(waiter)
        self._stats["requests_queued"] += 1
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
        self._stats["requests_wait_ms"] += (self._clock() - waiter.since) * 1000
        if result is PENDING:
            self._waiters.remove(waiter)
            self._stats["requests_timeouts"] += 1
            self._stats["requests_errors"] += 1
            raise PoolTimeout(self._timeout_message(self._clock() - started, wait))
        if result is CLOSED:
            raise PoolClosed(f"the connection pool for database {self.name!r} was closed while waiting")
        return None if result is SLOT else result

    def _abandon(self, waiter: Waiter) -> None:
        """Pass on what an interrupted waiter was (or was about to be) served."""
        with self._lock:
            result = waiter.result
            self._stats["requests_wait_ms"] += (self._clock() - waiter.since) * 1000
            if result is PENDING:
                self._waiters.remove(waiter)
            elif result is SLOT:
                self._opening -= 1
                self._release_slot_locked()
            elif result is CLOSED or self._keep_locked(result, self._clock()):
                return
        if isinstance(result, Entry):
            self._discard(result, "closes_lifetime")

    def _timeout_message(self, waited: float, wait: float) -> str:
        return (
            f"could not get a connection for database {self.name!r} within {waited:.3f} s "
            f"(timeout={wait} s): max_size={self.max_size}, in use={len(self._in_use)}, "
            f"idle={len(self._idle)}, waiting={len(self._waiters)}. Raise OPTIONS['pool']['max_size'] "
            "or ['timeout'], or return connections sooner."
        )

    def _usable(self, entry: Entry[C], deadline: float) -> bool | None:
        """Validate (or, with ``reset_on="checkout"``, reset) an idle entry for a checkout.

        When unusable it is closed and its slot kept for the caller (``False``);
        ``None`` when the guard cut a reset or check off at *deadline* (the
        entry is closed and its slot released).
        """
        if self._clock() >= entry.expires_at:
            self._discard(entry, "closes_lifetime", keep_slot=True)
            return False
        if self._reset is None:
            entry.fresh = False
            return True
        if not self.resets_on_checkin:
            entry.fresh = False
            return self._guarded_call(entry, deadline, self._reset, "reset")
        # Reset when it was returned (or never used): validate only.
        if self._check is not None and self._clock() - entry.used_at >= self.validation_window:
            return self._guarded_call(entry, deadline, self._check, "check")
        if self._alive is not None and not self._alive(entry.conn):
            logger.warning("pool %r: discarding an idle connection the server or network closed", self.name)
            with self._lock:
                self._stats["checks_failed"] += 1
                self._stats["connections_lost"] += 1
            self._discard(entry, "closes_broken", keep_slot=True)
            return False
        with self._lock:
            self._stats["checks_fast"] += 1
        return True

    def _guarded_call(
        self, entry: Entry[C], deadline: float, work: Callable[[C], object], kind: str, *, keep_slot: bool = True
    ) -> bool | None:
        """Run *work* (a reset or a check) on *entry* under the guard thread's watch.

        Returns ``True`` on success. On failure the entry is closed (its slot
        kept for the caller when *keep_slot*) and ``False`` returned, or
        ``None`` when the guard cut the call off at *deadline* (the slot is
        then released).
        """
        if self._interrupt is not None:
            with self._lock:
                # Bounded by the deadline, but never cut shorter than MIN_RESET_TIME
                # (timeout=0 means "do not queue", not "no reset").
                entry.reset_deadline = max(deadline, self._clock() + MIN_RESET_TIME)
                entry.interrupted = False
                self._resetting[id(entry)] = entry
        started = self._clock()
        try:
            result = work(entry.conn)
        except BaseException as exc:  # any failure means "do not hand out"
            logger.warning("pool %r: discarding a connection whose %s failed: %r", self.name, kind, exc)
            with self._lock:
                self._resetting.pop(id(entry), None)
                self._stats["resets_failed" if kind == "reset" else "checks_failed"] += 1
                self._stats["connections_lost"] += 1
            interrupted = not isinstance(exc, Exception)
            self._discard(entry, "closes_broken", keep_slot=keep_slot and not (interrupted or entry.interrupted))
            if interrupted:
                raise
            return None if entry.interrupted else False
        elapsed = self._clock() - started
        with self._lock:
            self._resetting.pop(id(entry), None)
            if not entry.interrupted:
                if kind == "reset":
                    self._stats["resets_num"] += 1
                    self._stats["resets_ms"] += elapsed * 1000
                    key = f"resets_{result}"
                    self._stats[key] = self._stats.get(key, 0) + 1
                else:
                    self._stats["checks_ping"] += 1
        if entry.interrupted:  # cut off just as it succeeded: its socket is shut down now
            self._discard(entry, "closes_broken")
            return None
        return True

    def interrupt_overdue_resets(self) -> None:
        """Cut off resets still running past their checkout's deadline (the guard thread).

        Runs the injected ``interrupt`` under the pool's lock, so the checking-out
        thread cannot close the connection meanwhile.
        """
        with self._lock:
            if not self._resetting:
                return
            now = self._clock()
            for key, entry in list(self._resetting.items()):
                if now >= entry.reset_deadline and self._interrupt is not None:
                    del self._resetting[key]
                    entry.interrupted = True
                    logger.warning(
                        "pool %r: a connection's reset was still running at the checkout deadline", self.name
                    )
                    try:
                        self._interrupt(entry.conn)
                    except Exception:  # noqa: BLE001 - the reset then ends on its own
                        logger.warning("pool %r: could not interrupt a reset", self.name, exc_info=True)

    # -- checkin ----------------------------------------------------------

    def putconn(self, conn: C, *, broken: bool = False, owner: object | None = None) -> None:
        """Return a connection checked out with :meth:`getconn`.

        With ``reset_on="checkin"`` the connection is reset now, in the
        calling thread (what the checkout left behind, locks included, is
        released at once); a failed reset closes it. Never raises for that.

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
            self._stats["usage_ms"] += (now - entry.checked_out_at) * 1000
            entry.stack = entry.owner = entry.thread = None
            if broken:
                self._stats["returns_bad"] += 1
            elif not self.resets_on_checkin and self._keep_locked(entry, now):
                return
        if broken or not self.resets_on_checkin:
            self._discard(entry, "closes_broken" if broken else "closes_lifetime")
        else:
            self._reset_and_keep(entry)

    def _reset_and_keep(self, entry: Entry[C]) -> None:
        """Reset a returned entry, then hand it to a waiter or make it idle (closed if that fails)."""
        if self._closed or self._clock() >= entry.expires_at:
            self._discard(entry, "closes_lifetime")
            return
        reset = self._reset
        assert reset is not None  # resets_on_checkin
        if not self._guarded_call(entry, self._clock() + self.timeout, reset, "reset", keep_slot=False):
            return  # closed, its slot released
        entry.fresh = False
        with self._lock:
            if self._keep_locked(entry, self._clock()):
                return
        self._discard(entry, "closes_lifetime")

    def _take_abandoned_locked(self) -> list[Entry[C]]:
        """Remove and return the checkouts whose owner is gone (call with the lock held).

        Gone: the owner was garbage-collected, or the thread that checked out
        has ended and the owner is not ``shared`` between threads. No
        finaliser is involved: this runs in the maintenance thread and before
        a checkout waits.
        """
        found: list[Entry[C]] = []
        for key, entry in list(self._in_use.items()):
            ref, thread = entry.owner, entry.thread
            if ref is None:
                continue  # no owner given: the caller manages the connection itself
            owner = ref()
            if owner is not None and (thread is None or thread.is_alive() or self._owner_shared(owner)):
                continue
            del self._in_use[key]
            found.append(entry)
        return found

    def _owner_shared(self, owner: object) -> bool:
        return self._shared is not None and self._shared(owner)

    def _reclaim(self, entries: list[Entry[C]]) -> None:
        """Take back connections whose owner ended without returning them (leaks).

        Each is closed, never handed to another checkout: even when its owner
        was garbage-collected, a cursor of the driver (which holds the
        connection, not the owner) or the owner itself, still alive in another
        reference, could still reach it.
        """
        now = self._clock()
        for entry in entries:
            with self._lock:
                self._stats["returns_reclaimed"] += 1
                self._stats["usage_ms"] += (now - entry.checked_out_at) * 1000
                if not entry.leak_reported:
                    self._stats["leaks_detected"] += 1
            logger.warning(
                "pool %r: reclaimed a connection checked out %.1f s ago and never returned: its thread "
                "ended or its wrapper was garbage-collected without close(); checked out at:\n%s",
                self.name,
                now - entry.checked_out_at,
                "".join(entry.stack.format()) if entry.stack else "(stack not recorded: set leak_timeout)\n",
            )
            entry.stack = entry.owner = entry.thread = None
            self._discard(entry, "closes_broken")

    # -- background maintenance --------------------------------------------

    def maintenance_round(self) -> None:
        """One round of the maintenance thread: :meth:`run_maintenance`, then the hooks."""
        try:
            self.run_maintenance()
        except Exception:  # noqa: BLE001 - the hooks still run
            logger.exception("pool %r: maintenance failed", self.name)
        self._run_hooks()

    def run_maintenance(self) -> None:
        """Reclaim abandoned checkouts, close idle and expired connections, refill ``min_size``, report leaks."""
        with self._lock:
            abandoned = [] if self._closed else self._take_abandoned_locked()
        if abandoned:
            self._reclaim(abandoned)
        now = self._clock()
        with self._lock:
            if self._closed:
                return
            # Lifetime first: those close anyway, and bring the pool nearer min_size.
            expired = [(e, "closes_lifetime") for e in self._idle if now >= e.expires_at]
            surplus = self._nconns - len(expired) - self.min_size
            keep: deque[Entry[C]] = deque()
            for entry in self._idle:  # oldest returned first
                if now >= entry.expires_at:
                    continue
                if surplus > 0 and now - entry.used_at >= self.max_idle:
                    expired.append((entry, "closes_idle"))
                    surplus -= 1
                else:
                    keep.append(entry)
            self._idle = keep
            leaks = self._find_leaks_locked(now)
        for entry, reason in expired:
            self._discard(entry, reason)
        for held, stack in leaks:
            logger.warning(
                "pool %r: a connection has been checked out for %.1f s (leak_timeout=%s s); checked out at:\n%s",
                self.name,
                held,
                self.leak_timeout,
                "".join(stack.format()) if stack else "(stack not recorded)\n",
            )
        self._fill()

    def _find_leaks_locked(self, now: float) -> list[tuple[float, traceback.StackSummary | None]]:
        if self.leak_timeout is None:
            return []
        leaks = []
        for entry in self._in_use.values():
            if not entry.leak_reported and now - entry.checked_out_at >= self.leak_timeout:
                entry.leak_reported = True
                self._stats["leaks_detected"] += 1
                leaks.append((now - entry.checked_out_at, entry.stack))
        return leaks

    def _fill(self) -> None:
        """Open connections in the background until ``min_size`` are open (backing off on errors)."""
        while self._clock() >= self._fill_after:
            with self._lock:
                if self._closed or self._nconns >= self.min_size:
                    self._fill_backoff = 0.0
                    return
                self._nconns += 1
                self._opening += 1
            try:
                entry = self._open_entry(self._clock() + self.timeout)
            except Exception as exc:  # noqa: BLE001 - retried with backoff
                self._fill_backoff = min(max(self._fill_backoff * 2, 0.1), 10.0)
                self._fill_after = self._clock() + self._fill_backoff * (0.5 + random.random() / 2)  # noqa: S311
                logger.warning("pool %r: could not open a connection to keep min_size: %s", self.name, exc)
                return
            with self._lock:
                if self._waiters and not self._closed:
                    self._waiters.popleft().serve(entry)
                elif not self._closed:
                    self._idle.appendleft(entry)  # the least recently used end
                    continue
            if self._closed:
                self._discard(entry, None)
