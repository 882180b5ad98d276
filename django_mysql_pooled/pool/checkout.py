"""Checkout: take an idle connection, a slot to open one, or a place in the queue; validate; register.

The fast path (an idle connection returned moments ago, validated without a
round trip) holds the pool's lock once: the entry leaves the idle list and
enters ``_in_use``, counted, in the same hold (:meth:`CheckoutPoolState._take_locked`);
its zero-round-trip ``alive`` check runs after, and only when that fails is
the lock taken again to undo the checkout. Meanwhile the maintenance thread
cannot reclaim the entry as abandoned: its owner is referenced by the
checking-out call itself and its thread is running. A checkout that needs a
round trip (a ping, or the reset with ``reset_on="checkout"``) is registered
only once that succeeded, in the hold that counts it.
"""

from __future__ import annotations

import logging
import threading
import traceback
import weakref
from typing import Any, ClassVar

from django_mysql_pooled.pool import stats
from django_mysql_pooled.pool.errors import ErrorClasses
from django_mysql_pooled.pool.maintenance import MaintainedPoolState
from django_mysql_pooled.pool.state import CLOSED, PENDING, SLOT, C, Entry, Waiter
from django_mysql_pooled.pool.validation import Outcome

__all__ = ["EXPIRED", "LOST", "READY", "ROUND_TRIP", "CheckoutPoolState", "Holder"]

logger = logging.getLogger(__name__)

#: What :meth:`CheckoutPoolState._take_locked` made of an idle entry.
READY = "ready"  # registered and counted; only the zero-round-trip check is left
ROUND_TRIP = "round trip"  # under the guard's watch; registered once the reset or ping succeeded
EXPIRED = "expired"  # past max_lifetime: to be closed and replaced
LOST = "lost"  # READY, but the zero-round-trip check failed: to be unregistered, closed and replaced

#: Who checks out: the owner's weak reference, the thread, the caller's stack (with leak_timeout).
Holder = tuple["weakref.ref[Any] | None", threading.Thread, "traceback.StackSummary | None"]


class CheckoutPoolState(MaintainedPoolState[C]):
    """The maintained pool plus the checkout's steps below :meth:`ConnectionPool.getconn`."""

    errors: ClassVar[ErrorClasses]  # set by ConnectionPool
    max_waiting: int

    def _take_locked(self, entry: Entry[C], now: float, deadline: float, holder: Holder) -> str:
        """Register an idle *entry* for the checkout in progress, or say what it still needs (call
        with the lock held): :data:`READY`, :data:`ROUND_TRIP` or :data:`EXPIRED`."""
        if now >= entry.expires_at:
            return EXPIRED
        if now - entry.used_at >= self._fast_window:
            self._start_round_trip_locked(entry, now, deadline)
            return ROUND_TRIP
        # _register_locked, inline on the fast path
        entry.checked_out_at = now
        entry.leak_reported = False
        entry.owner, entry.thread, entry.stack = holder
        self._in_use[id(entry.conn)] = entry
        counters = self._stats
        counters[stats.REQUESTS_NUM] += 1
        if self.resets_on_checkin:
            counters[stats.CHECKS_FAST] += 1  # taken back if the check fails (LOST)
        else:  # no reset: reused as it is
            entry.fresh = False
        return READY

    def _register_locked(self, entry: Entry[C], now: float, holder: Holder) -> None:
        """Record the checkout of *entry* by *holder* (call with the lock held)."""
        entry.checked_out_at = now
        entry.leak_reported = False
        entry.owner, entry.thread, entry.stack = holder
        self._in_use[id(entry.conn)] = entry
        self._stats[stats.REQUESTS_NUM] += 1

    def _checkout(  # long: the checkout's loop over every step an entry can take
        self, entry: Entry[C] | None, state: str, started: float, wait: float, holder: Holder
    ) -> C:
        """Finish a checkout from what :meth:`_take_locked` made of *entry* (``None``: none idle):
        validate it, or take or open another; a connection that fails validation is closed and
        replaced by the same checkout."""
        deadline = started + wait
        taken_at = started  # when the lock hold that took *entry* read the clock
        replacing = False  # whether this checkout holds a discarded connection's slot
        while True:
            if entry is not None:
                if state is ROUND_TRIP:
                    outcome = self._round_trip(entry, taken_at, holder)
                    if outcome is Outcome.OK:
                        return entry.conn
                    if outcome is Outcome.CUT_OFF:
                        with self._lock:
                            self._stats[stats.REQUESTS_TIMEOUTS] += 1
                            self._stats[stats.REQUESTS_ERRORS] += 1
                        raise self.errors.timeout(self._timeout_message(self._clock() - started, wait))
                elif state is EXPIRED:
                    self._discard(entry, stats.CLOSES_LIFETIME, keep_slot=True)
                else:  # READY, or LOST: it failed that check
                    alive = self._fast_alive
                    if state is READY and (alive is None or alive(entry.conn)):
                        return entry.conn
                    self._lost_at_checkout(entry)
                replacing = True
            entry, state, taken_at = self._acquire(deadline, started, wait, replacing, holder)
            if entry is None:
                return self._open_for_checkout(deadline, replacing, holder)

    def _lost_at_checkout(self, entry: Entry[C]) -> None:
        """Undo a READY checkout whose zero-round-trip check failed; close it, keeping its slot."""
        logger.warning("pool %r: discarding an idle connection the server or network closed", self.name)
        with self._lock:
            self._in_use.pop(id(entry.conn), None)
            entry.stack = entry.owner = entry.thread = None
            counters = self._stats
            # Taken back, unless pop_stats() reset them meanwhile.
            counters[stats.REQUESTS_NUM] = max(counters[stats.REQUESTS_NUM] - 1, 0)
            counters[stats.CHECKS_FAST] = max(counters[stats.CHECKS_FAST] - 1, 0)
            self._count_lost_locked("check")
        self._discard(entry, stats.CLOSES_BROKEN, keep_slot=True)

    def _round_trip(self, entry: Entry[C], started: float, holder: Holder) -> Outcome:
        """Reset (``reset_on="checkout"``) or ping *entry* under the guard's watch; on success count
        it and register the checkout in one hold. On failure it is closed, its slot kept for the
        caller (:attr:`Outcome.REPLACE`) or released when the guard cut the call off
        (:attr:`Outcome.CUT_OFF`)."""
        resets = not self.resets_on_checkin
        try:
            if resets:
                entry.fresh = False
                method = self._reset(entry.conn)  # type: ignore[misc]
                if method != "reset_connection":
                    stats.reset_key(method)  # an unknown method fails the reset
            else:
                self._check(entry.conn)  # type: ignore[misc]
        except BaseException as exc:  # noqa: BLE001 - any failure: do not hand out (non-Exceptions re-raised)
            return self._call_failed(entry, "reset" if resets else "check", exc, keep_slot=True)
        now = self._clock()
        with self._lock:
            self._resetting.pop(id(entry), None)
            if not entry.interrupted:
                if resets:
                    self._count_reset_locked(method, now - started)
                else:
                    self._stats[stats.CHECKS_PING] += 1
                self._register_locked(entry, now, holder)
                return Outcome.OK
        self._discard(entry, stats.CLOSES_BROKEN)  # cut off just as it succeeded: its socket is shut down now
        return Outcome.CUT_OFF

    def _open_for_checkout(self, deadline: float, replacing: bool, holder: Holder) -> C:
        try:
            entry = self._open_entry(deadline)
        except BaseException:
            self.count(stats.REQUESTS_ERRORS)
            raise
        now = self._clock()
        with self._lock:
            if replacing:  # the reset ladder's last rung: a new connection replaced the lost one
                self._stats[stats.RESETS_RECONNECT] += 1
            self._register_locked(entry, now, holder)
        return entry.conn

    def _acquire(
        self, deadline: float, started: float, wait: float, slot: bool, holder: Holder
    ) -> tuple[Entry[C] | None, str, float]:
        """Take an idle or handed-over entry, with what :meth:`_take_locked` made of it and when,
        or ``(None, "", 0.0)`` when the caller has a slot to open one."""
        while True:
            with self._lock:
                if self._closed:
                    if slot:
                        self._nconns -= 1
                    raise self.errors.closed(f"the connection pool for database {self.name!r} is closed")
                if self._idle:
                    if slot:
                        self._release_slot_locked()
                    entry, now = self._idle.pop(), self._clock()
                    return entry, self._take_locked(entry, now, deadline, holder), now
                if slot:
                    self._opening += 1
                    return None, "", 0.0
                if self._nconns < self.max_size and self._opening < self.max_connecting:
                    self._nconns += 1
                    self._opening += 1
                    return None, "", 0.0
                abandoned = self._take_abandoned_locked()
                if not abandoned:
                    served = self._wait_locked_then(deadline, started, wait)
                    if served is None:
                        return None, "", 0.0
                    now = self._clock()
                    return served, self._take_locked(served, now, deadline, holder), now
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
