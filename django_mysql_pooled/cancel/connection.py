"""The killer's own MySQLdb connection: open it, check it without a round trip, drop it after fork."""

from __future__ import annotations

import contextlib
import os
import select
from collections.abc import Mapping
from typing import Any

import MySQLdb

from django_mysql_pooled import identity

__all__ = ["alive", "detach", "open_connection"]

#: The killer's idle session must not hit ``wait_timeout`` (the server's maximum, one year:
#: https://mariadb.com/kb/en/server-system-variables/#wait_timeout).
_SESSION_SETUP = "SET SESSION wait_timeout = 31536000"


def open_connection(params: Mapping[str, Any]) -> tuple[Any, int]:
    """Open an autocommit connection with *params*; return it and its socket's descriptor.

    Its server's identity is recorded on it (:mod:`django_mysql_pooled.identity`),
    read in the one round trip that also sets its ``wait_timeout``.

    :raises MySQLdb.Error: the connection or its setup failed.
    """
    conn: Any = MySQLdb.connect(**params)
    try:
        conn.autocommit(True)
        cursor = conn.cursor()
        cursor.execute(f"{_SESSION_SETUP}; {identity.probe_sql(conn.get_server_info())}")
        cursor.nextset()
        identity.remember(conn, cursor.fetchone())
        cursor.close()
        return conn, int(conn.fileno())
    except MySQLdb.Error:
        with contextlib.suppress(MySQLdb.Error):
            conn.close()
        raise


def alive(fd: int | None) -> bool:
    """Whether an idle connection's socket has nothing to read: the server closed nothing
    (``KILL``, ``wait_timeout`` and a shutdown all send an error packet or EOF)."""
    if fd is None:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def detach(conn: Any, fd: int | None) -> None:
    """Close *conn* in a forked child without ending the parent's session.

    As ``session/native.py``'s ``detach_after_fork``: the shared descriptor is
    pointed at ``/dev/null`` first, so that ``close()`` (or mysqlclient's
    dealloc, even at interpreter exit) sends ``COM_QUIT`` nowhere.
    """
    if fd is not None:
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)
    with contextlib.suppress(MySQLdb.Error):
        conn.close()
