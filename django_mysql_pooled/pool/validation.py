"""Checking a connection before it is handed out, and resetting it, under the guard thread's watch.

With ``reset_on="checkin"`` a connection was reset when it was returned, so a
checkout only validates it: a connection returned less than
``validation_window`` seconds ago is checked with the injected zero-round-trip
``alive`` (one ``poll()`` of its socket), an older one with ``check`` (a
ping); HikariCP's ``aliveBypassWindowMs`` follows the same reasoning. With
``reset_on="checkout"`` the reset is the validation.

Resets and pings block on the network with no timeout of their own: the guard
thread (:meth:`ValidatedPoolState.interrupt_overdue_resets`) cuts off one
still running at its checkout's deadline with the injected ``interrupt``.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from django_mysql_pooled.pool import stats
from django_mysql_pooled.pool.hosted import HostedPoolState
from django_mysql_pooled.pool.state import C, Entry

__all__ = ["MIN_RESET_TIME", "Outcome", "ValidatedPoolState"]

logger = logging.getLogger(__name__)

#: Seconds a reset is always allowed before the guard may cut it off, however
#: little of the checkout's ``timeout`` is left.
MIN_RESET_TIME = 1.0


class Outcome(enum.Enum):
    """What a validation, reset or check made of an entry."""

    #: Usable: hand it out (or keep it).
    OK = enum.auto()
    #: Closed; its slot is kept for the caller, who opens or takes another.
    REPLACE = enum.auto()
    #: Closed after the guard cut the call off at the deadline; its slot is released.
    CUT_OFF = enum.auto()


class ValidatedPoolState(HostedPoolState[C]):
    """The pool's bookkeeping plus validation at checkout and guarded resets."""

    def __init__(
        self,
        connect: Callable[[float | None], C],
        close: Callable[[C], None],
        *,
        reset: Callable[[C], str] | None,
        reset_on: str,
        alive: Callable[[C], bool] | None,
        check: Callable[[C], object] | None,
        validation_window: float,
        interrupt: Callable[[C], None] | None,
        timeout: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(connect, close, **kwargs)
        self.timeout = timeout
        self._reset = reset
        #: Whether :meth:`putconn` resets (``reset_on="checkin"``).
        self.resets_on_checkin = reset is not None and reset_on == "checkin"
        self._alive, self._check = alive, check
        self.validation_window = validation_window
        self._interrupt = interrupt if (reset is not None or check is not None) else None
        self._resetting: dict[int, Entry[C]] = {}  # resets in progress, for the guard
        self._returning: dict[int, Entry[C]] = {}  # returned, queued for a return worker
        self._returns_in_flight = 0  # resets return workers are running

    def _validate(self, entry: Entry[C], deadline: float) -> Outcome:
        """Validate (or, with ``reset_on="checkout"``, reset) an idle entry for a checkout.

        Expired, or returned too long ago and not answering a ping, or with a
        socket the server or network closed: the entry is closed
        (:attr:`Outcome.REPLACE`).
        """
        if self._clock() >= entry.expires_at:
            self._discard(entry, stats.CLOSES_LIFETIME, keep_slot=True)
            return Outcome.REPLACE
        if self._reset is None:
            entry.fresh = False
            return Outcome.OK
        if not self.resets_on_checkin:
            entry.fresh = False
            return self._guarded_call(entry, deadline, self._reset, "reset")
        # Reset when it was returned (or never used): validate only.
        if self._check is not None and self._clock() - entry.used_at >= self.validation_window:
            return self._guarded_call(entry, deadline, self._check, "check")
        if self._alive is not None and not self._alive(entry.conn):
            logger.warning("pool %r: discarding an idle connection the server or network closed", self.name)
            with self._lock:
                self._count_lost_locked("check")
            self._discard(entry, stats.CLOSES_BROKEN, keep_slot=True)
            return Outcome.REPLACE
        entry.checked_fast = True  # counted with the checkout, under the same lock
        return Outcome.OK

    def _guarded_call(
        self, entry: Entry[C], deadline: float, work: Callable[[C], object], kind: str, *, keep_slot: bool = True
    ) -> Outcome:
        """Run *work* (a reset or a check) on *entry* under the guard thread's watch.

        On failure the entry is closed, its slot kept for the caller when
        *keep_slot* (:attr:`Outcome.REPLACE`) or released when the guard cut
        the call off at *deadline* (:attr:`Outcome.CUT_OFF`).
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
        except BaseException as exc:  # noqa: BLE001 - any failure: do not hand out (non-Exceptions re-raised)
            return self._call_failed(entry, kind, exc, keep_slot=keep_slot)
        self._count_success(entry, kind, result, self._clock() - started)
        if entry.interrupted:  # cut off just as it succeeded: its socket is shut down now
            self._discard(entry, stats.CLOSES_BROKEN)
            return Outcome.CUT_OFF
        return Outcome.OK

    def _call_failed(self, entry: Entry[C], kind: str, exc: BaseException, *, keep_slot: bool) -> Outcome:
        """Close *entry* after its reset or check raised *exc* (re-raised unless an ``Exception``)."""
        logger.warning("pool %r: discarding a connection whose %s failed: %r", self.name, kind, exc)
        with self._lock:
            self._resetting.pop(id(entry), None)
            self._count_lost_locked(kind)
        interrupted = not isinstance(exc, Exception)
        self._entry_failed(entry, exc)  # several hosts: may mark its host down
        self._discard(entry, stats.CLOSES_BROKEN, keep_slot=keep_slot and not (interrupted or entry.interrupted))
        if interrupted:
            raise exc
        return Outcome.CUT_OFF if entry.interrupted else Outcome.REPLACE

    def _count_lost_locked(self, kind: str) -> None:
        """Count a connection a failed reset or check lost (call with the lock held)."""
        self._stats[stats.RESETS_FAILED if kind == "reset" else stats.CHECKS_FAILED] += 1
        self._stats[stats.CONNECTIONS_LOST] += 1

    def _count_success(self, entry: Entry[C], kind: str, result: object, elapsed: float) -> None:
        with self._lock:
            self._resetting.pop(id(entry), None)
            if entry.interrupted:
                return
            if kind == "reset":
                self._stats[stats.RESETS_NUM] += 1
                self._stats[stats.RESETS_MS] += elapsed * 1000
                key = stats.reset_key(result)  # type: ignore[arg-type]
                self._stats[key] = self._stats.get(key, 0) + 1
            else:
                self._stats[stats.CHECKS_PING] += 1

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

    # -- resets at checkin -------------------------------------------------

    def reset_returned(self, entry: Entry[C]) -> None:
        """Reset an entry :meth:`putconn` queued (a return worker), unless :meth:`close` took it."""
        with self._lock:
            if self._returning.pop(id(entry), None) is None:
                return
            self._returns_in_flight += 1
        try:
            self._reset_and_keep(entry)
        finally:
            with self._lock:
                self._returns_in_flight -= 1

    def _pending_returns_locked(self) -> int:
        """Returned connections queued for, or being reset by, a return worker."""
        return len(self._returning) + self._returns_in_flight

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until every connection returned so far has been reset (or closed) by the return workers.

        :param timeout: seconds to wait at most.
        :returns: whether the returns were all done within *timeout*.
        """
        deadline = self._clock() + timeout
        while self._returns_in_flight or (self._returning and not self._closed):
            if self._clock() >= deadline:
                return False
            time.sleep(0.001)
        return True

    def _reset_and_keep(self, entry: Entry[C]) -> None:
        """Reset a returned entry, then hand it to a waiter or make it idle (closed if that fails)."""
        if self._closed or self._clock() >= entry.expires_at:
            self._discard(entry, stats.CLOSES_LIFETIME)
            return
        reset = self._reset
        assert reset is not None  # resets_on_checkin
        if self._guarded_call(entry, self._clock() + self.timeout, reset, "reset", keep_slot=False) is not Outcome.OK:
            return  # closed, its slot released
        entry.fresh = False
        with self._lock:
            if self._keep_locked(entry, self._clock()):
                return
        self._discard(entry, stats.CLOSES_LIFETIME)
