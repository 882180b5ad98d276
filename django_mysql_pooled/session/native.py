"""Session reset for mysqlclient connections: the one reach below its public API.

``COM_RESET_CONNECTION`` (``mysql_reset_connection()`` in the C client) rolls
back, drops temporary tables, releases locks (``GET_LOCK``, ``LOCK TABLES``),
clears user variables and prepared statements and restores session variables
to the global defaults, in one round trip and without re-authenticating
(https://dev.mysql.com/doc/c-api/8.0/en/mysql-reset-connection.html,
https://mariadb.com/kb/en/com_reset_connection/). mysqlclient does not expose
it, but ``Connection._get_native_connection()`` (mysqlclient >= 2.1) returns a
PyCapsule holding the ``MYSQL*`` handle, and the function is resolved with
:mod:`ctypes` from the client library ``MySQLdb._mysql`` is linked to.

The capability is probed once per process; when it is missing the ladder falls
back to ``COM_CHANGE_USER`` (:meth:`MySQLdb.connections.Connection.change_user`)
and then to close-and-reconnect, which the pool performs.

With MariaDB Connector/C the module also reads, without a round trip, the
current default schema (kept up to date by the server's ``session_track_schema``
notifications) and the server status flags of the last OK packet, through
``mariadb_get_infov()``.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import socket
import threading
from typing import Any, Final

import MySQLdb
from MySQLdb import _mysql

__all__ = [
    "interrupt",
    "socket_alive",
    "METHOD_CHANGE_USER",
    "METHOD_RECONNECT",
    "METHOD_RESET_CONNECTION",
    "NativeClient",
    "ResetFailed",
    "detach_after_fork",
    "native_client",
]

METHOD_RESET_CONNECTION: Final = "reset_connection"
METHOD_CHANGE_USER: Final = "change_user"
METHOD_RECONNECT: Final = "reconnect"

_CAPSULE_NAME = b"_mysql.connection.native_connection"
# enum mariadb_value in MariaDB Connector/C's mysql.h (values are ABI; only
# appended to since 3.0).
_MARIADB_CONNECTION_SCHEMA = 15
_MARIADB_CONNECTION_SERVER_STATUS = 30
# Server status flags (mysql_com.h).
SERVER_STATUS_IN_TRANS: Final = 0x0001
SERVER_STATUS_AUTOCOMMIT: Final = 0x0002
SERVER_MORE_RESULTS_EXIST: Final = 0x0008


class ResetFailed(MySQLdb.OperationalError):
    """The session could not be reset: the connection must be discarded."""


class NativeClient:
    """Functions of the C client library behind ``MySQLdb._mysql``.

    Every attribute is ``None`` when the capability is missing; callers fall
    back instead of failing.
    """

    def __init__(self, library_path: str | None) -> None:
        self.reset_connection: Any = None
        self.get_infov: Any = None
        self.errno: Any = None
        self.error: Any = None
        self._get_pointer: Any = None
        if library_path is None or not hasattr(_mysql.connection, "_get_native_connection"):
            return
        try:
            lib = ctypes.CDLL(library_path)
            reset = lib.mysql_reset_connection
            errno = lib.mysql_errno
            error = lib.mysql_error
        except (OSError, AttributeError):
            return
        # Called with arguments that are ctypes objects already (_Calls), without argtypes:
        # ctypes then converts nothing, which halves the cost of a call (measured with callgrind).
        reset.restype = ctypes.c_int
        errno.argtypes = [ctypes.c_void_p]
        errno.restype = ctypes.c_uint
        error.argtypes = [ctypes.c_void_p]
        error.restype = ctypes.c_char_p
        get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
        get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
        get_pointer.restype = ctypes.c_void_p
        self.reset_connection, self.errno, self.error = reset, errno, error
        self._get_pointer = get_pointer
        # mariadb_get_infov() only reads the MYSQL structure: called without releasing
        # the GIL (PyDLL), so that reading a flag cannot hand the GIL to another thread.
        infov = getattr(ctypes.PyDLL(library_path), "mariadb_get_infov", None)
        if infov is not None:
            infov.restype = ctypes.c_ubyte  # my_bool (a char: 0 on success), read as an int
            self.get_infov = infov

    def _new_calls(self, conn: Any) -> _Calls:
        """Build the ready-made calls on *conn* and keep them on it (``_dmp_native_calls``; a
        connection is used by one thread at a time). Callers look them up with ``getattr`` first:
        no frame once built."""
        address = self._get_pointer(conn._get_native_connection(), _CAPSULE_NAME)
        calls: _Calls = _Calls(self, address)
        conn._dmp_native_calls = calls
        return calls

    def reset(self, conn: Any) -> None:
        """Send ``COM_RESET_CONNECTION`` on *conn*.

        :raises ResetFailed: with the server's or client's error code and
            message (2013 for a connection the server killed).
        """
        calls = getattr(conn, "_dmp_native_calls", None) or self._new_calls(conn)
        if calls.reset() != 0:
            handle = calls.address
            raise ResetFailed(self.errno(handle), (self.error(handle) or b"").decode("utf-8", "replace"))

    def schema(self, conn: Any) -> str | None:
        """Return the client's view of the default schema, or ``None`` if unknown."""
        if self.get_infov is None:
            return None
        calls = getattr(conn, "_dmp_native_calls", None) or self._new_calls(conn)
        if calls.read_schema() != 0:
            return None  # pragma: no cover - only with a broken handle
        return (calls.schema.value or b"").decode("utf-8", "replace")

    def server_status(self, conn: Any) -> int | None:
        """Return the status flags of the last server reply, or ``None`` if unknown (read at every checkin)."""
        if self.get_infov is None:
            return None
        calls = getattr(conn, "_dmp_native_calls", None) or self._new_calls(conn)
        if calls.read_status() != 0:
            return None  # pragma: no cover - only with a broken handle
        status: int = calls.status.value
        return status


class _Calls:
    """The C calls :class:`NativeClient` makes on one connection, their arguments converted once."""

    __slots__ = ("address", "read_schema", "read_status", "reset", "schema", "status")

    def __init__(self, native: NativeClient, address: int) -> None:
        self.address = address
        handle = ctypes.c_void_p(address)
        self.reset = functools.partial(native.reset_connection, handle)
        self.status = ctypes.c_uint()
        self.schema = ctypes.c_char_p()
        infov = native.get_infov
        if infov is not None:
            status_key, schema_key = (
                ctypes.c_int(_MARIADB_CONNECTION_SERVER_STATUS),
                ctypes.c_int(_MARIADB_CONNECTION_SCHEMA),
            )
            self.read_status = functools.partial(infov, handle, status_key, ctypes.byref(self.status))
            self.read_schema = functools.partial(infov, handle, schema_key, ctypes.byref(self.schema))


_probe_lock = threading.Lock()
_client: NativeClient | None = None


def native_client() -> NativeClient:
    """Return the process-wide :class:`NativeClient`, probing it on first use."""
    global _client
    if _client is None:
        with _probe_lock:
            if _client is None:
                _client = NativeClient(getattr(_mysql, "__file__", None))
    return _client


def detach_after_fork(conn: Any) -> None:
    """Close *conn* in a forked child without touching the parent's session.

    The child shares the socket with its parent: ``close()`` would send
    ``COM_QUIT`` over it and end the parent's session. Pointing the file
    descriptor at ``/dev/null`` first makes ``COM_QUIT`` (and any
    ``shutdown()``) go nowhere, and the child's copy of the socket is then
    released without affecting the parent's.
    """
    fd = _fd(conn)  # fileno() may refuse: a parent's thread may have been inside a call
    if fd is None:
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    with contextlib.suppress(MySQLdb.Error):  # the fd is /dev/null: nothing to report
        conn.close()


def interrupt(conn: Any) -> None:
    """Shut *conn*'s socket down so that a call blocked on it fails now.

    Used by the pool's guard thread to bound a reset stalled on the network:
    the blocked ``COM_RESET_CONNECTION`` then fails with error 2013 and the
    connection is discarded. ``shutdown()`` on a duplicate of the descriptor
    acts on the shared socket; the connection's own descriptor stays open, so
    no other file can take its number before the connection is closed.

    The descriptor recorded when the connection was opened is used: mysqlclient
    2.3 refuses ``fileno()`` while another thread runs a call on the connection
    (``ProgrammingError``), which is exactly when this is needed.
    """
    fd = _fd(conn)
    if fd is None:
        return
    sock = socket.socket(fileno=os.dup(fd))
    try:
        with contextlib.suppress(OSError):  # already shut down or not connected
            sock.shutdown(socket.SHUT_RDWR)
    finally:
        sock.close()


def socket_alive(conn: Any) -> bool:
    """Whether *conn*'s socket looks usable, without a round trip.

    An idle connection that was reset has nothing to read: readable data, an
    end of file or an error on its socket means the server closed the session
    (``KILL``, ``wait_timeout``, a restart: the server sends an error packet
    and closes) or the network reset the link. One ``poll()`` with a zero
    timeout, the check HikariCP and MariaDB Connector/J do instead of a ping
    for a connection used moments ago.
    """
    poller = getattr(conn, "_dmp_poller", None)
    if poller is None:
        fd = _fd(conn)
        if fd is None:
            return False
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def remember_fd(conn: Any) -> None:
    """Record *conn*'s socket descriptor and a poll object watching it (call right after connecting)."""
    conn._dmp_fd = conn.fileno()
    conn._dmp_poller = select.poll()  # used by one thread at a time, as the connection
    conn._dmp_poller.register(conn._dmp_fd, select.POLLIN | select.POLLPRI)


def _fd(conn: Any) -> int | None:
    fd: int | None = getattr(conn, "_dmp_fd", None)
    if fd is not None:
        return fd
    try:
        return int(conn.fileno())
    except MySQLdb.Error:
        return None
