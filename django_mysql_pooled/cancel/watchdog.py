"""The process-wide watchdog thread that fires cancellation deadlines.

One daemon thread for the whole process, a heap of deadlines and a condition:
no thread or timer per query. Cancelled tokens hand their kills to the same
thread, so :meth:`CancelToken.cancel` never blocks on the network.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["Watchdog", "watchdog"]

logger = logging.getLogger(__name__)


class Deadlined(Protocol):
    """What the watchdog schedules: a deadline (``time.monotonic()`` seconds) it may drop once closed."""

    @property
    def deadline(self) -> float | None: ...

    @property
    def closed(self) -> bool: ...


#: ``action(item, reason)``: what to do when an item's time comes.
Action = Callable[[Any, Any], None]


class Watchdog:
    """Runs ``action(item, "timeout")`` at each item's deadline, ``action(item, reason)`` on request."""

    #: Rebuild the heap without closed items once it holds more than this many entries.
    COMPACT_AT = 1024

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Deadlined, Action]] = []
        self._urgent: collections.deque[tuple[Deadlined, str, Action]] = collections.deque()
        self._seq = itertools.count()
        self._compact_at = self.COMPACT_AT
        self._thread = threading.Thread(target=self._run, name="django_mysql_pooled-cancel-watchdog", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"<Watchdog scheduled={len(self._heap)} urgent={len(self._urgent)}>"

    def schedule(self, item: Deadlined, action: Action) -> None:
        """Call ``action(item, "timeout")`` at ``item.deadline`` unless the item is closed by then."""
        deadline = item.deadline
        if deadline is None:
            return
        with self._cond:
            if len(self._heap) > self._compact_at:
                self._heap = [entry for entry in self._heap if not entry[2].closed]
                heapq.heapify(self._heap)
                self._compact_at = max(self.COMPACT_AT, 2 * len(self._heap))
            heapq.heappush(self._heap, (deadline, next(self._seq), item, action))
            if self._heap[0][2] is item:
                self._cond.notify()

    def kill_soon(self, item: Deadlined, reason: str, action: Action) -> None:
        """Call ``action(item, reason)`` in the watchdog thread as soon as possible."""
        with self._cond:
            self._urgent.append((item, reason, action))
            self._cond.notify()

    def _next(self) -> tuple[Deadlined, str, Action]:
        with self._cond:
            while True:
                if self._urgent:
                    return self._urgent.popleft()
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, _seq, item, action = self._heap[0]
                if item.closed:
                    heapq.heappop(self._heap)
                    continue
                wait = deadline - time.monotonic()
                if wait <= 0:
                    heapq.heappop(self._heap)
                    return item, "timeout", action
                self._cond.wait(wait)

    def _run(self) -> None:
        while True:
            item, reason, action = self._next()
            try:
                action(item, reason)
            except Exception:
                logger.exception("cancellation watchdog: %r failed for %r", action, item)


_watchdog: Watchdog | None = None
_watchdog_lock = threading.Lock()


def watchdog() -> Watchdog:
    """The process's watchdog, started on first use (and again in a forked child)."""
    global _watchdog
    dog = _watchdog
    if dog is None:
        with _watchdog_lock:
            dog = _watchdog
            if dog is None:
                dog = _watchdog = Watchdog()
    return dog


def _forget_after_fork() -> None:
    global _watchdog, _watchdog_lock
    _watchdog = None  # its thread does not exist in the child
    _watchdog_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)
