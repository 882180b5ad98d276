"""The connections that send ``KILL QUERY``: one per server and credentials, never from the pool.

A query is stopped from *another* connection with ``KILL QUERY <id>``
(https://mariadb.com/kb/en/kill/, https://dev.mysql.com/doc/refman/8.0/en/kill.html).
That connection cannot come from the pool: the pool may be exhausted by the
very queries being killed. Each :class:`Killer` owns a plain MySQLdb
connection and one sender thread:

* **Kept ready**: opened in the sender thread when the first cancellable
  evaluation starts (not at the first kill, when the server may be at
  ``max_connections`` because of the very queries to kill), then checked by
  the pool's maintenance thread about once a second (:func:`.killers.killer_keeper`)
  and reopened when the server closed it. When it cannot be opened, the kill
  fails (logged, counted) and the server-side limit still stops the query.
* **Bounded**: every attempt has a 2 s connect timeout and 2 s read and write
  timeouts; kills to one server wait only behind kills to that server.
* **Same server only**: the killer reads its server's identity
  (:mod:`django_mysql_pooled.identity`) when it connects and refuses to kill a
  connection recorded on another server.
* **Fork-safe**: in a child, the inherited connection is detached without
  ``COM_QUIT`` (which would end the parent's session) and the locks, queue
  and thread are new.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import MySQLdb

from django_mysql_pooled import identity
from django_mysql_pooled.cancel import connection
from django_mysql_pooled.cancel.sender import Sender

__all__ = ["COPIED", "KILL_BOUND", "KillOutcome", "Killer", "Login"]

logger = logging.getLogger(__name__)

#: Connection parameters the killer copies from the Django connection's.
COPIED = (
    "host",
    "port",
    "user",
    "password",
    "passwd",
    "unix_socket",
    "ssl",
    "ssl_mode",
    "read_default_file",
    "read_default_group",
    "charset",
)
#: Seconds: ``connect_timeout`` (whole seconds in the C client), ``read_timeout``, ``write_timeout``.
CONNECT_TIMEOUT = 2
IO_TIMEOUT = 2
#: Seconds one :meth:`Killer.kill` may take at most: a stale connection's
#: attempt, then a new connection's (connect, identity, KILL), each bounded by
#: the timeouts above; plus the wait for the connection's lock.
KILL_BOUND = 2 * (CONNECT_TIMEOUT + 4 * IO_TIMEOUT)
#: Seconds between two connect attempts of :meth:`Killer.keep_ready` after a failure.
RETRY_AFTER = 1.0

_NO_SUCH_THREAD = 1094  # ER_NO_SUCH_THREAD: the target connection is gone
_KILL_DENIED = 1095  # ER_KILL_DENIED_ERROR: not our thread, no PROCESS / CONNECTION ADMIN privilege
#: The client library's own error codes (CR_MIN_ERROR to CR_MAX_ERROR); the server's are outside.
_CLIENT_ERRORS = range(2000, 3000)


class KillOutcome(enum.Enum):
    """What :meth:`Killer.kill` did."""

    SENT = "sent"  # the server accepted KILL QUERY
    GONE = "gone"  # 1094: no such connection (any more)
    DENIED = "denied"  # 1095: another user's connection
    WRONG_SERVER = "wrong server"  # not sent: the killer is on another server than the target
    FAILED = "failed"  # not sent: the server could not be reached
    #: Sent (or maybe sent), but the connection failed before the server's answer came: the
    #: kill may still reach the server later, and end whatever statement that session runs then.
    UNANSWERED = "unanswered"


#: ``login(params)``: the ``connect()`` arguments with fresh credentials (rotating credentials).
Login = Callable[[Mapping[str, Any]], Mapping[str, Any]]


class Killer:
    """Sends ``KILL QUERY <id>`` over a dedicated connection, from its own sender thread.

    :param params: ``MySQLdb.connect()`` keyword arguments (server and credentials).
    :param login: see :func:`.killers.killer_for`.
    """

    def __init__(self, params: Mapping[str, Any], login: Login | None = None) -> None:
        self._login = login
        self.params = {
            **params,
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": IO_TIMEOUT,
            "write_timeout": IO_TIMEOUT,
        }
        self.where = str(params.get("unix_socket") or f"{params.get('host', 'localhost')}:{params.get('port', 3306)}")
        #: The server identity the killer connection reached, ``None`` while not connected.
        self.identity: str | None = None
        self._conn: Any = None
        self._fd: int | None = None
        self._logged: set[KillOutcome] = set()
        self._unreachable_logged = False
        self._failed_at = 0.0
        #: Whether a cancellable evaluation has used this killer (then it is kept ready).
        self.used = False
        self._new_locks()

    def _new_locks(self) -> None:
        self._lock = threading.Lock()  # the connection
        self._lock_queue = threading.Lock()  # _connect_queued
        self._sender = Sender(f"django_mysql_pooled-killer-{self.where}")
        self._connect_queued = False

    def __repr__(self) -> str:
        return f"<Killer {self.where!r} id={self.connection_id} queued={len(self._sender)}>"

    @property
    def connection_id(self) -> int | None:
        """The killer connection's own server id, ``None`` while not connected."""
        conn = self._conn
        return None if conn is None else int(conn.thread_id())

    def submit(self, job: Callable[[], None]) -> None:
        """Run *job* in this killer's sender thread (returns at once)."""
        self._sender.submit(job)

    def keep_ready(self, *, if_used: bool = False) -> None:
        """Have the connection open: (re)connect in the sender thread if it is missing or closed
        by the server (no round trip; waits :data:`RETRY_AFTER` seconds after a failure).

        :param if_used: only if a cancellable evaluation has used this killer
            (the pool's hook: a process that never cancels opens nothing).
        """
        if if_used and not self.used:
            return
        self.used = True
        if self._conn is not None and connection.alive(self._fd):
            return
        with self._lock_queue:
            if self._connect_queued or time.monotonic() - self._failed_at < RETRY_AFTER:
                return
            self._connect_queued = True
        self.submit(self._ready)

    def _ready(self) -> None:
        self._connect_queued = False
        if not self.used:  # closed meanwhile
            return
        if not self._lock.acquire(timeout=KILL_BOUND):
            return
        try:
            if self._conn is not None and not connection.alive(self._fd):
                self._drop()
            self._connect()
        except MySQLdb.Error as exc:
            self._failed_at = time.monotonic()
            if not self._unreachable_logged:  # once until it connects again: retried every second
                self._unreachable_logged = True
                logger.warning("killer %s: cannot open the KILL QUERY connection: %s", self.where, exc)
        else:
            self._unreachable_logged = False
        finally:
            self._lock.release()

    # -- killing ----------------------------------------------------------------------

    def kill(
        self,
        connection_id: int,
        target: str | None,
        *,
        check_server: bool = True,
        still_wanted: Callable[[], bool] = lambda: True,
    ) -> KillOutcome:
        """Send ``KILL QUERY connection_id``, if the killer reaches the target's server.

        Takes at most about :data:`KILL_BOUND` seconds; logs, never raises.

        :param target: the identity recorded on the target connection
            (:func:`django_mysql_pooled.identity.identity_of`); ``None``: unknown.
        :param check_server: ``False``: kill without comparing identities (ProxySQL,
            which resolves the id itself; docs/cancellation.rst). With the check,
            an unknown identity on either side refuses the kill.
        :param still_wanted: asked once connected, just before the kill is sent:
            ``False`` (the statement ended meanwhile) sends nothing.
        """
        if not self._lock.acquire(timeout=KILL_BOUND):
            logger.warning("killer %s: KILL QUERY %s not sent: the connection is busy", self.where, connection_id)
            return KillOutcome.FAILED
        try:
            return self._kill(connection_id, target, check_server, still_wanted)
        finally:
            self._lock.release()

    def _kill(
        self, connection_id: int, target: str | None, check_server: bool, still_wanted: Callable[[], bool]
    ) -> KillOutcome:
        outcome, unanswered = self._attempts(connection_id, target, check_server, still_wanted)
        if unanswered:  # whatever a retry did: the first KILL may still arrive
            logger.warning(
                "killer %s: KILL QUERY %s was sent but not answered: it may still reach the server; "
                "that connection is closed instead of reused",
                self.where,
                connection_id,
            )
            return KillOutcome.UNANSWERED
        return outcome

    def _attempts(  # long: the stale connection's attempt, then a new one's, each outcome inline
        self, connection_id: int, target: str | None, check_server: bool, still_wanted: Callable[[], bool]
    ) -> tuple[KillOutcome, bool]:
        """The outcome, and whether an attempt may have sent the kill without getting its answer."""
        unanswered = False
        for stale in (self._conn is not None, False):
            sending = False
            if stale and not connection.alive(self._fd):  # closed by the server: nothing could be delivered
                self._drop()
                continue
            try:
                conn = self._connect()
                if check_server and (target is None or self.identity is None or target != self.identity):
                    self._log_once(
                        KillOutcome.WRONG_SERVER,
                        "KILL QUERY %s not sent: the query runs on server %s, the killer connection "
                        "reached %s (a load balancer or proxy in between?)",
                        connection_id,
                        target or "(unknown)",
                        self.identity,
                    )
                    return KillOutcome.WRONG_SERVER, unanswered
                if not still_wanted():  # the statement ended while the killer connected
                    return KillOutcome.GONE, unanswered
                sending = True
                conn.cursor().execute(f"KILL QUERY {int(connection_id)}")
            except MySQLdb.OperationalError as exc:
                code = exc.args[0] if exc.args else None
                if code == _NO_SUCH_THREAD:
                    return KillOutcome.GONE, unanswered
                if code == _KILL_DENIED:
                    self._log_once(
                        KillOutcome.DENIED, "KILL QUERY %s denied (%s): another user's connection", connection_id, exc
                    )
                    return KillOutcome.DENIED, unanswered
                # A client-side error (2000-2999: lost connection, read timeout) after the
                # kill was written leaves it unknown whether the server got it; a server error
                # is the server's answer.
                unanswered = unanswered or (sending and (not isinstance(code, int) or code in _CLIENT_ERRORS))
                self._drop()
                if not stale:
                    self._failed_at = time.monotonic()
                    logger.warning("killer %s: KILL QUERY %s failed: %s", self.where, connection_id, exc)
                    return KillOutcome.FAILED, unanswered
            except MySQLdb.Error as exc:
                logger.warning("killer %s: KILL QUERY %s failed: %s", self.where, connection_id, exc)
                return KillOutcome.FAILED, unanswered or sending
            else:
                return KillOutcome.SENT, unanswered
        return KillOutcome.FAILED, unanswered  # pragma: no cover - the loop always returns

    def _log_once(self, kind: KillOutcome, message: str, *args: Any) -> None:
        """Warn once per killer and kind: it would repeat for every kill."""
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(
                "killer %s: " + message + "; the server-side time limit still applies (logged once)", self.where, *args
            )

    # -- the connection -------------------------------------------------------------

    def _connect(self) -> Any:
        """The open connection, opened if needed, with its server's identity (under ``_lock``)."""
        if self._conn is None:
            params = self.params if self._login is None else self._login(self.params)
            self._conn, self._fd = connection.open_connection(params)
            self.identity = identity.identity_of(self._conn)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn, self._fd, self.identity = self._conn, None, None, None
        if conn is not None:
            with contextlib.suppress(MySQLdb.Error):
                conn.close()

    def close(self) -> None:
        """Close the connection; the next cancellable evaluation or kill opens a new one."""
        self.used = False
        with self._lock:
            self._drop()

    def _after_fork_in_child(self) -> None:
        """Forget the parent's connection without ending its session, and its locks and thread."""
        conn, fd, self._conn, self._fd, self.identity = self._conn, self._fd, None, None, None
        self._new_locks()
        if conn is not None:
            connection.detach(conn, fd)
