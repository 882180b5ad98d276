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
        #: The zero-round-trip check a checkout runs (``None``: none).
        self._fast_alive = alive if self.resets_on_checkin else None
        self.validation_window = validation_window  # sets _fast_window
        self._interrupt = interrupt if (reset is not None or check is not None) else None
        #: Seconds a checkin reset may run before the guard cuts it off.
        self._reset_time = max(timeout, MIN_RESET_TIME)
        self._resetting: dict[int, Entry[C]] = {}  # resets in progress, for the guard
        self._returning: dict[int, Entry[C]] = {}  # returned, queued for a return worker
        self._returns_in_flight = 0  # resets return workers are running

    @property
    def validation_window(self) -> float:
        """Seconds since its return below which a checkout validates a connection without a round trip."""
        return self._validation_window

    @validation_window.setter
    def validation_window(self, seconds: float) -> None:
        self._validation_window = seconds
        # A checkout validates an idle entry returned less than _fast_window seconds ago with
        # _fast_alive at most, an older one with a round trip (a ping, or the reset at checkout).
        if self._reset is None or (self.resets_on_checkin and self._check is None):
            self._fast_window = float("inf")
        else:
            self._fast_window = seconds if self.resets_on_checkin else float("-inf")

    def _start_round_trip_locked(self, entry: Entry[C], now: float, deadline: float) -> None:
        """Put *entry* under the guard's watch for a reset or check at checkout (call with the lock held).

        Bounded by the checkout's *deadline*, but never cut shorter than
        MIN_RESET_TIME (``timeout=0`` means "do not queue", not "no reset").
        """
        if self._interrupt is not None:
            entry.reset_deadline = max(deadline, now + MIN_RESET_TIME)
            entry.interrupted = False
            self._resetting[id(entry)] = entry

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

    def _count_reset_locked(self, method: str, elapsed: float) -> None:
        """Count a reset done by *method* (what the reset callable returned) in *elapsed* seconds."""
        counters = self._stats
        counters[stats.RESETS_NUM] += 1
        counters[stats.RESETS_MS] += elapsed * 1000
        if method == "reset_connection":  # a counter every pool starts with
            counters[stats.RESETS_RESET_CONNECTION] += 1
        else:
            key = stats.reset_key(method)
            counters[key] = counters.get(key, 0) + 1

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
            self._returns_in_flight += 1  # until it is kept or closed: drain() waits for it
            now = self._clock()
            resetting = self._start_reset_locked(entry, now)
        kept = False
        try:
            if resetting:
                kept = self._reset_and_keep(entry, now, in_flight=1)
            else:
                self._discard(entry, stats.CLOSES_LIFETIME)
        finally:
            if not kept:
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

    def _start_reset_locked(self, entry: Entry[C], now: float) -> bool:
        """Put a returned entry under the guard's watch for its checkin reset (call with the lock held).

        :returns: ``False`` when it is closed instead (the pool is closed, or it expired).
        """
        if self._closed or now >= entry.expires_at:
            return False
        if self._interrupt is not None:
            entry.reset_deadline = now + self._reset_time
            entry.interrupted = False
            self._resetting[id(entry)] = entry
        return True

    def _reset_and_keep(self, entry: Entry[C], started: float, in_flight: int = 0) -> bool:
        """Reset a returned entry :meth:`_start_reset_locked` set up at *started*, then hand it to a
        waiter or make it idle, in one hold of the lock (closed if that fails).

        :param in_flight: subtracted from the return workers' count in that hold.
        :returns: whether it was kept (the count then went down).
        """
        try:
            method = self._reset(entry.conn)  # type: ignore[misc]
            if method != "reset_connection":
                stats.reset_key(method)  # an unknown method fails the reset
        except BaseException as exc:  # noqa: BLE001 - any failure: close it (non-Exceptions re-raised)
            self._call_failed(entry, "reset", exc, keep_slot=False)
            return False
        now = self._clock()
        with self._lock:
            self._resetting.pop(id(entry), None)
            if entry.interrupted:  # cut off just as it succeeded: its socket is shut down now
                reason = stats.CLOSES_BROKEN
            else:
                self._count_reset_locked(method, now - started)
                entry.fresh = False
                if self._keep_locked(entry, now):
                    self._returns_in_flight -= in_flight
                    return True
                reason = stats.CLOSES_LIFETIME
        self._discard(entry, reason)
        return False
