"""The connections that send ``KILL QUERY``: one per server and credentials, never from the pool.

A query is stopped from *another* connection with ``KILL QUERY <id>``
(https://mariadb.com/kb/en/kill/, https://dev.mysql.com/doc/refman/8.0/en/kill.html).
That connection cannot come from the pool: the pool may be exhausted by the
very queries being killed. Each :class:`Killer` opens its own plain MySQLdb
connection lazily, with short timeouts, and reconnects once when it finds it
broken (killed, server restarted).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

import MySQLdb

__all__ = ["Killer", "killer_for"]

logger = logging.getLogger(__name__)

#: Connection parameters the killer copies from the Django connection's.
_COPIED = (
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
#: Seconds: ``connect_timeout`` (whole seconds in libmysqlclient), ``read_timeout``, ``write_timeout``.
CONNECT_TIMEOUT = 2
IO_TIMEOUT = 5

# Server errors of ``KILL QUERY`` meaning "nothing to kill": do not reconnect.
_NO_TARGET = (
    1094,  # ER_NO_SUCH_THREAD: the target connection is gone
    1095,  # ER_KILL_DENIED_ERROR: not our thread and no PROCESS/CONNECTION ADMIN privilege
)


class Killer:
    """Sends ``KILL QUERY <id>`` over a dedicated connection (thread-safe)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = {
            **params,
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": IO_TIMEOUT,
            "write_timeout": IO_TIMEOUT,
        }
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<Killer {self.params.get('host') or self.params.get('unix_socket')!r} id={self.connection_id}>"

    @property
    def connection_id(self) -> int | None:
        """The killer connection's own server id, ``None`` while not connected."""
        conn = self._conn
        return None if conn is None else int(conn.thread_id())

    def kill(self, connection_id: int) -> bool:
        """Send ``KILL QUERY connection_id``; reconnect once if the connection broke.

        :returns: whether the server accepted the kill (``False`` when the
            target is gone or the server cannot be reached; logged, never raised).
        """
        with self._lock:
            for attempt in (1, 2):
                try:
                    conn = self._connect()
                    conn.cursor().execute(f"KILL QUERY {int(connection_id)}")
                except MySQLdb.OperationalError as exc:
                    if exc.args and exc.args[0] in _NO_TARGET:
                        return False
                    self._drop()
                    if attempt == 2:
                        logger.warning("KILL QUERY %s failed: %s", connection_id, exc)
                except MySQLdb.Error as exc:
                    logger.warning("KILL QUERY %s failed: %s", connection_id, exc)
                    return False
                else:
                    return True
        return False

    def _connect(self) -> Any:
        if self._pid != os.getpid():  # forked: the inherited socket belongs to the parent
            self._conn, self._pid = None, os.getpid()
        if self._conn is None:
            self._conn = MySQLdb.connect(**self.params)
            self._conn.autocommit(True)
        return self._conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(MySQLdb.Error):
                conn.close()

    def close(self) -> None:
        """Close the connection (the next kill opens a new one)."""
        with self._lock:
            self._drop()


_killers: dict[str, Killer] = {}
_killers_lock = threading.Lock()


def killer_for(connection_params: Mapping[str, Any]) -> Killer:
    """The process-wide :class:`Killer` for these server and credentials (built on first use)."""
    params = {key: connection_params[key] for key in _COPIED if key in connection_params}
    key = repr(sorted(params.items()))
    with _killers_lock:
        killer = _killers.get(key)
        if killer is None:
            killer = _killers[key] = Killer(params)
        return killer


def all_killers() -> list[Killer]:
    """Every killer built in this process."""
    with _killers_lock:
        return list(_killers.values())
