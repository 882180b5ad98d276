"""A named daemon thread that runs submitted jobs in order: one per killer, so that kills to
one server never wait behind kills to another (an unreachable server takes seconds per kill).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

__all__ = ["Sender"]

logger = logging.getLogger(__name__)


class Sender:
    """Runs ``job()`` for each :meth:`submit` in its own thread, started on first use.

    :param name: the thread's name.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset_after_fork()

    def reset_after_fork(self) -> None:
        """New lock and queue, no thread: what a forked child needs (the parent's thread is gone)."""
        self._cond = threading.Condition()
        self._jobs: collections.deque[Callable[[], None]] = collections.deque()
        self._thread: threading.Thread | None = None

    def __len__(self) -> int:
        return len(self._jobs)

    def submit(self, job: Callable[[], None]) -> None:
        """Queue *job* (returns at once)."""
        with self._cond:
            self._jobs.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs:
                    self._cond.wait()
                job = self._jobs.popleft()
            try:
                job()
            except Exception:
                logger.exception("%s: %r failed", self.name, job)
