"""Several servers for one alias, the MySQL side: which errors take a host out, and connect-time checks.

The pool core (:mod:`django_mysql_pooled.pool.hosted`) asks :func:`host_error`
whether an error makes its host unusable. Yes for: nothing listening or the
host unknown (2002, 2003, 2005), the server gone or the connection lost
(2006, 2013, 2055: a node killed or partitioned; also a single connection
killed by an administrator, which costs that host one probe), too many
connections (1040), the server shutting down (1053), the host blocked
(1129), a Galera node not ready (1047, "WSREP has not yet prepared node for
application use": not ``Synced``, or ``wsrep_reject_queries`` set;
https://mariadb.com/kb/en/galera-cluster-system-variables/#wsrep_reject_queries),
a read-only server where ``require_primary`` is set (1290,
``ER_OPTION_PREVENTS_STATEMENT``), and what :func:`check_role` rejects.
Not for errors that would be the same on every host (access denied, unknown
database, a credentials provider failing): those reach the caller at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import MySQLdb

__all__ = [
    "HOST_DOWN_CODES",
    "READ_ONLY",
    "WSREP_NOT_READY",
    "HostRejected",
    "check_role",
    "connect_within",
    "host_error",
]

#: ER_UNKNOWN_COM_ERROR, which a Galera node that is not ready returns for every statement.
WSREP_NOT_READY = 1047
#: ER_OPTION_PREVENTS_STATEMENT: a write on a server with ``read_only`` (a replica, a demoted primary).
READ_ONLY = 1290
#: CR_SERVER_LOST: the connection was cut off while waiting for an answer.
LOST = 2013
#: Galera's ``wsrep_local_state`` of a node that serves: 4 (Synced).
SYNCED = "4"

#: Error numbers that say the host, not the statement or the login, is the problem.
HOST_DOWN_CODES = frozenset({1040, WSREP_NOT_READY, 1053, 1129, 2002, 2003, 2005, 2006, 2013, 2055})


class HostRejected(MySQLdb.OperationalError):
    """A server that answered but must not get traffic: read-only where a primary is required,
    or a Galera node that is not ``Synced`` (``args``: the server's error number for that, a message)."""


def host_error(exc: BaseException, *, require_primary: bool = False) -> str | None:
    """Why *exc* makes its host unusable (a short reason for logs and stats), or ``None``."""
    if isinstance(exc, HostRejected):
        return _printable(str(exc.args[1]) if len(exc.args) > 1 else str(exc))
    if not isinstance(exc, MySQLdb.OperationalError | MySQLdb.InternalError | MySQLdb.InterfaceError):
        return None
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if code in HOST_DOWN_CODES or (code == READ_ONLY and require_primary):
        message = exc.args[1] if len(exc.args) > 1 else ""
        # The text may be a tenant's (SIGNAL ... MESSAGE_TEXT): no control characters into logs or poolstats.
        return _printable(f"({code}) {message}"[:200])
    return None


def check_role(
    conn: Any, where: str, *, require_primary: bool, require_synced: bool, require_ready: bool = False
) -> None:
    """On a connection just opened: refuse a read-only server or a Galera node that is not Synced
    (one round trip per check asked for, none otherwise; the connection is closed when refused).

    :param where: ``"host:port"``, for the message.
    :param require_ready: run a query even without *require_primary* (several
        hosts: a Galera node that is not ready, or rejects queries, accepts the
        connection and refuses statements with 1047, so a connect alone proves
        nothing).
    :raises HostRejected: ``(1290, ...)`` for ``@@global.read_only = 1``
        with *require_primary*; ``(1047, ...)`` for ``wsrep_local_state`` not
        4 with *require_synced* (a server without Galera has no such status:
        it passes).
    :raises MySQLdb.Error: the check's query failed.
    """
    if not (require_primary or require_synced or require_ready):
        return
    cursor = conn.cursor()
    try:
        if require_primary or require_ready:
            _check_read_only(cursor, where, require_primary=require_primary)
        if require_synced:
            _check_synced(cursor, where)
    except BaseException:
        cursor.close()
        conn.close()
        raise
    cursor.close()


def _check_read_only(cursor: Any, where: str, *, require_primary: bool) -> None:
    # DO 1 first: a Galera node that rejects queries (wsrep_reject_queries, or not in the Primary
    # component) still answers SELECT @@..., SHOW, SET and COM_PING, but refuses DO with 1047
    # (measured on galera-4 26.4 / MariaDB 10.11, tests/clusters/test_fixtures.py).
    cursor.execute("DO 1; SELECT @@global.read_only")
    cursor.nextset()
    (read_only,) = cursor.fetchone()
    if require_primary and int(read_only):
        raise HostRejected(
            READ_ONLY,
            f"{where} is read-only (@@read_only=1: a replica or a demoted primary) and "
            "OPTIONS['pool']['require_primary'] is set",
        )


def _check_synced(cursor: Any, where: str) -> None:
    cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_local_state'")
    row = cursor.fetchone()
    if row is not None and _text(row[1]) != SYNCED:
        cursor.execute("SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'")
        comment = _text((cursor.fetchone() or ("", "?"))[1])
        raise HostRejected(
            WSREP_NOT_READY,
            f"{where} is a Galera node in state {_text(row[1])} ({comment}), not 4 (Synced), and "
            "OPTIONS['pool']['require_synced'] is set",
        )


def connect_within(connect: Callable[[], Any], seconds: float, where: str) -> Any:
    """``connect()`` in a thread of its own, given up after *seconds*.

    ``connect_timeout`` bounds the TCP connect and the handshake only: a
    server that logs the client in and then never answers (a hung or
    malicious host, a black hole right after the login) would hang the
    queries mysqlclient sends while connecting (``SET autocommit``) and the
    readiness check, for ever. Given up, the connect goes on in its thread;
    the connection it may still open is closed at once.

    :raises MySQLdb.OperationalError: ``(2013, ...)`` (a host error) when given up;
        whatever *connect* raised otherwise.
    """
    lock = threading.Lock()
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            conn = connect()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc
            conn = None
        with lock:
            if box.get("abandoned") and conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
                return
            box["conn"] = conn
            done.set()

    threading.Thread(target=run, name=f"django_mysql_pooled-connect-{where}", daemon=True).start()
    if not done.wait(seconds):
        with lock:
            if not done.is_set():
                box["abandoned"] = True
                raise MySQLdb.OperationalError(LOST, f"no answer from {where} within {seconds:.0f} s of connecting")
    if "error" in box:
        raise box["error"]
    return box["conn"]


def _printable(text: str) -> str:
    return "".join(char if char.isprintable() else "?" for char in text)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
