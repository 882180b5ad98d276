"""The pool's life cycle and background work: open, close, fork, maintenance rounds, leaks.

The maintenance thread (about once a second) reclaims checkouts whose owner
is gone, closes idle connections past ``max_idle`` (above ``min_size``) and
expired ones, refills ``min_size`` in the background, reports checkouts held
past ``leak_timeout``, and runs the hooks (the stats publisher). The guard
thread bounds resets and pings (see ``validation.py``).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from django_mysql_pooled.pool import returns, stats, tasks
from django_mysql_pooled.pool.hosted import PROBE_INTERVAL, probe_round
from django_mysql_pooled.pool.state import CLOSED, C, Entry
from django_mysql_pooled.pool.validation import ValidatedPoolState

__all__ = ["MaintainedPoolState"]

logger = logging.getLogger(__name__)


class MaintainedPoolState(ValidatedPoolState[C]):
    """Validated bookkeeping plus the life cycle and the background threads."""

    def __init__(
        self,
        connect: Callable[[float | None], C],
        close: Callable[[C], None],
        *,
        max_idle: float,
        leak_timeout: float | None,
        maintenance_interval: float,
        guard_interval: float,
        num_workers: int,
        shared: Callable[[Any], bool] | None,
        detach: Callable[[C], None] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connect, close, **kwargs)
        self.max_idle, self.leak_timeout = max_idle, leak_timeout
        self._shared = shared
        self._detach = detach or close
        self._guard_interval = guard_interval
        self._num_workers = num_workers if self.resets_on_checkin else 0
        self._return_queue: queue.SimpleQueue[Entry[C]] = queue.SimpleQueue()
        self._return_workers: list[threading.Thread] = []  # started by open()
        periods = [p / 2 for p in (max_idle, self.max_lifetime, leak_timeout or 0.0) if p > 0]
        self._interval = max(0.01, min([maintenance_interval, *periods]))
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._fill_backoff = 0.0  # seconds; doubles per failed background connect
        self._fill_after = 0.0  # clock time before which the background fill does not retry
        #: Callables run with the pool by the maintenance thread after each
        #: round (about once a second) and once at close, e.g. stats publishers.
        self.hooks: list[Callable[[Any], None]] = []

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
        self._worker = tasks.start(
            self, _maintenance_round, purpose="maintenance", stop=self._stop, interval=self._interval, first=True
        )
        if self._num_workers:
            self._return_workers = returns.start_workers(self, self._return_queue, self._num_workers)
        if self._hosts is not None:  # several hosts: probe the down ones (hosted.py)
            tasks.start(self, probe_round, purpose="probe", stop=self._stop, interval=PROBE_INTERVAL, first=False)
        if self._interrupt is not None:
            # Not the maintenance thread, which may itself be blocked opening a connection.
            tasks.start(
                self, _interrupt_overdue, purpose="guard", stop=self._stop, interval=self._guard_interval, first=False
            )

    def close(self, timeout: float = 5.0) -> None:
        """Close idle connections, fail waiters with :class:`PoolClosed`, stop the threads.

        Connections checked out now are closed when they are returned; those
        returned and waiting for a return worker are closed now.

        :param timeout: seconds to wait for each background thread to end.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            idle = [*self._idle, *self._returning.values()]  # queued returns are not reset now
            self._idle.clear()
            self._returning.clear()
            self._nconns -= len(idle)
            for entry in idle:
                if entry.host is not None:
                    entry.host.open -= 1
            # Served under the lock: a waiter timing out now must not find itself pending.
            while self._waiters:
                self._waiters.popleft().serve(CLOSED)
        for entry in idle:
            self._safe_close(entry.conn)
        self._stop.set()
        with self._lock:
            workers, self._return_workers = self._return_workers, []  # a late putconn() resets itself
        returns.stop_workers(self._return_queue, workers, timeout)
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
        # Also those a thread of the parent was resetting or checking: in the child that thread is gone.
        entries = [*self._idle, *self._in_use.values(), *self._returning.values(), *self._resetting.values()]
        self._lock = threading.Lock()  # the parent's may have been held at fork()
        self._idle.clear()
        self._in_use.clear()
        self._returning.clear()
        self._resetting.clear()
        self._return_queue = queue.SimpleQueue()  # its entries are detached below
        self._return_workers = []
        self._waiters.clear()
        self._nconns = self._opening = 0
        for host in self._hosts.hosts if self._hosts is not None else ():
            host.open = 0
        self._closed = True
        self._stop = threading.Event()  # the inherited one's lock may be held too
        self._stop.set()
        for entry in entries:
            try:
                self._detach(entry.conn)
            except Exception:  # noqa: BLE001 - must never break the child
                logger.warning("pool %r: could not detach an inherited connection", self.name, exc_info=True)

    # -- owners gone without returning their connection ---------------------

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
                self._stats[stats.RETURNS_RECLAIMED] += 1
                self._stats[stats.USAGE_MS] += (now - entry.checked_out_at) * 1000
                if not entry.leak_reported:
                    self._stats[stats.LEAKS_DETECTED] += 1
            logger.warning(
                "pool %r: reclaimed a connection checked out %.1f s ago and never returned: its thread "
                "ended or its wrapper was garbage-collected without close(); checked out at:\n%s",
                self.name,
                now - entry.checked_out_at,
                "".join(entry.stack.format()) if entry.stack else "(stack not recorded: set leak_timeout)\n",
            )
            entry.stack = entry.owner = entry.thread = None
            self._discard(entry, stats.CLOSES_BROKEN)

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
            expired = [(e, stats.CLOSES_LIFETIME) for e in self._idle if now >= e.expires_at]
            surplus = self._nconns - len(expired) - self.min_size
            keep: deque[Entry[C]] = deque()
            for entry in self._idle:  # oldest returned first
                if now >= entry.expires_at:
                    continue
                if surplus > 0 and now - entry.used_at >= self.max_idle:
                    expired.append((entry, stats.CLOSES_IDLE))
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
                self._stats[stats.LEAKS_DETECTED] += 1
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


def _maintenance_round(pool: Any) -> None:
    pool.maintenance_round()


def _interrupt_overdue(pool: Any) -> None:
    pool.interrupt_overdue_resets()
