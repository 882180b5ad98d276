"""One statement on one server connection, and the protocol that keeps a kill on it.

Race safety (the problem of go-sql-driver/mysql#496: a late ``KILL QUERY``
hitting the *next* statement): the executing thread and the killer's sender
thread agree under one lock (:data:`lock`) on which statement runs. The
sender marks the execution ``KILLING`` just before it sends the kill and
``KILLED`` (or ``KILL_FAILED``) once the server answered; the executing
thread, when its statement returns, waits while it is ``KILLING`` and only
then starts anything else on that connection. A kill requested after the
statement was marked done, or still queued behind another kill to the same
server, does nothing. A kill whose answer was lost (the killer's connection
failed after sending it: ``KILL_UNANSWERED``) may still reach the server
later, so that session never serves another checkout.

Every wait is bounded (:data:`FINISH_BOUND`), and :data:`lock` is a new one
in a forked child, where a kill in flight at ``fork()`` never completes.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from typing import Any

from django.conf import settings

from django_mysql_pooled import identity
from django_mysql_pooled.cancel.killer import KILL_BOUND, Killer, KillOutcome
from django_mysql_pooled.pool import stats

__all__ = ["Execution", "State", "lock"]

logger = logging.getLogger(__name__)

#: The one lock (and condition) guarding every token, scope and execution state.
lock = threading.Condition()
#: Seconds a returning statement waits at most for a kill in flight to be answered
#: (longer than a kill can take, so that no kill is sent after it stopped waiting).
FINISH_BOUND = 2 * KILL_BOUND + 5.0

#: The counter of each kill outcome.
_COUNTED = {
    KillOutcome.SENT: stats.KILLS_SENT,
    KillOutcome.DENIED: stats.KILLS_DENIED,
    KillOutcome.WRONG_SERVER: stats.KILLS_WRONG_SERVER,
    KillOutcome.FAILED: stats.KILLS_FAILED,
    KillOutcome.UNANSWERED: stats.KILLS_UNANSWERED,
}


class State(enum.Enum):
    RUNNING = "running"
    KILLING = "killing"
    KILLED = "killed"
    KILL_FAILED = "kill failed"
    #: Sent, answer lost: it may land later (:attr:`Execution.abandoned`).
    KILL_UNANSWERED = "kill unanswered"
    DONE = "done"


#: The state a kill's outcome leaves (any other: ``KILL_FAILED``).
_STATE_AFTER = {KillOutcome.SENT: State.KILLED, KillOutcome.UNANSWERED: State.KILL_UNANSWERED}


class Execution:
    """One statement on one server connection.

    :param raw: the ``MySQLdb`` connection (its server identity is read at kill time).
    :param pool: the alias's pool (counts the kills), ``None`` without one.
    """

    __slots__ = ("abandoned", "connection_id", "killer", "pool", "raw", "state", "unanswered")

    def __init__(self, raw: Any, killer: Killer, pool: Any) -> None:
        self.raw = raw
        self.connection_id = int(raw.thread_id())
        self.killer = killer
        self.pool = pool
        self.state = State.RUNNING
        #: finish() stopped waiting for a kill in flight (see there).
        self.abandoned = False
        #: The kill was sent and its answer lost (:attr:`State.KILL_UNANSWERED`).
        self.unanswered = False

    def __repr__(self) -> str:
        return f"<Execution connection={self.connection_id} {self.state.value}>"

    def request_kill(self) -> None:
        """Have the killer's sender thread kill this statement if it still runs then."""
        self.killer.submit(self._deliver)

    def _deliver(self) -> None:
        """Send the kill (the killer's sender thread)."""
        with lock:
            if self.state is not State.RUNNING:
                return
            self.state = State.KILLING
        outcome = KillOutcome.FAILED
        try:
            check = getattr(settings, "DJANGO_MYSQL_POOLED_KILL_CHECK_SERVER", True)
            outcome = self.killer.kill(
                self.connection_id, identity.identity_of(self.raw), check_server=check, still_wanted=self._killing
            )
        finally:
            with lock:
                self.state = _STATE_AFTER.get(outcome, State.KILL_FAILED)
                lock.notify_all()
            key = _COUNTED.get(outcome)
            if key is not None and self.pool is not None:
                self.pool.count(key)

    def _killing(self) -> bool:
        with lock:
            return self.state is State.KILLING

    def finish(self) -> bool:
        """Mark the statement done, once no kill is in flight; return whether a kill landed.

        Waits at most :data:`FINISH_BOUND` seconds (then logs a warning and sets
        :attr:`abandoned`: a kill may still be sent, so the caller must never
        let the connection serve another statement of someone else). A kill
        sent whose answer was lost (:attr:`State.KILL_UNANSWERED`) counts as
        landed and sets :attr:`abandoned` too: it may still reach the server.
        """
        deadline = time.monotonic() + FINISH_BOUND
        with lock:
            while self.state is State.KILLING:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning(
                        "KILL QUERY %s still unanswered after %.0f s: not waiting; the connection is closed "
                        "when returned",
                        self.connection_id,
                        FINISH_BOUND,
                    )
                    self.abandoned = True
                    break
                lock.wait(left)
            if self.state is State.KILL_UNANSWERED:
                self.abandoned = self.unanswered = True  # the kill may still arrive (logged by the killer)
            killed = self.state is State.KILLED or self.state is State.KILL_UNANSWERED
            self.state = State.DONE
        return killed


def _after_fork_in_child() -> None:
    global lock
    lock = threading.Condition()  # the parent's may have been held at fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
