"""Bad input: the address is not a MySQL server, the credentials are wrong, the database does not exist.

Each checkout fails with the driver's or the server's own error (its code and
message say what is wrong: a handshake that never completed, a refused
connection, access denied, an unknown database), as a
``django.db.OperationalError`` whose ``__cause__`` is the
``MySQLdb.OperationalError``. Nothing is left half-open: the pool holds no
connection and no slot (a pool of one connection fails every attempt with
the same error, never with ``PoolTimeout``), the wrapper has no connection,
no socket of the process stays open, the fake server sees the client close
its end, and the MySQL server keeps no session of the failed attempts.
"""

from __future__ import annotations

import contextlib
import gc
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import MySQLdb
import pytest
from django.db import OperationalError

from tests.faults.conftest import TOLERANCE, PoolTargetFactory, wait_until
from tests.faults.mariadb import USER, PrivateMariaDB, requires_mariadbd

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]

TIMEOUT = 1.0  # the pool's checkout timeout, seconds (connect_timeout: 1 s)
ATTEMPTS = 2

HTTP_400 = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
    b"Connection: close\r\n\r\nBad Request"
)
HANDSHAKE_LOST = "Lost connection to server at 'handshake: reading initial communication packet'"


class NotMySQL:
    """A TCP server on 127.0.0.1 that speaks something else than MySQL.

    * ``http``: an HTTP server: it waits for a request (which a MySQL client,
      waiting for the server's greeting, never sends) and answers 400;
    * ``http_first``: answers ``400 Bad Request`` at once and closes its side;
    * ``garbage``: sends 64 random bytes and waits;
    * ``protocol_9``: sends a well-formed packet announcing protocol version 9.

    Counts the connections it accepted and those the client closed (EOF).
    Every thread gives up after :attr:`max_seconds`.
    """

    def __init__(self, behaviour: str, max_seconds: float = 30.0) -> None:
        self.behaviour = behaviour
        self.max_seconds = max_seconds
        self.accepted = 0
        self.closed_by_client = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._threads = [threading.Thread(target=self._accept, name="faults-not-mysql", daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        self._stop.set()
        self._threads[0].join(10.0)  # the acceptor: no link thread starts after it ends
        for thread in self._threads[1:]:
            thread.join(10.0)
        self._listener.close()

    def _accept(self) -> None:
        ends = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < ends:
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(client,), name="faults-not-mysql-link", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            client.settimeout(0.05)
            if self.behaviour == "http_first":
                client.sendall(HTTP_400)
                client.shutdown(socket.SHUT_WR)
            elif self.behaviour == "garbage":
                client.sendall(random.Random(0).randbytes(64))
            elif self.behaviour == "protocol_9":
                client.sendall(b"\x05\x00\x00\x00\x09junk")
            received = b""
            ends = time.monotonic() + self.max_seconds
            while not self._stop.is_set() and time.monotonic() < ends:
                try:
                    chunk = client.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not chunk:
                    with self._lock:
                        self.closed_by_client += 1
                    return
                received += chunk
                if self.behaviour == "http" and b"\r\n\r\n" in received:
                    client.sendall(HTTP_400)
                    received = b""


def open_sockets() -> int:
    """Sockets this process has open now (after a garbage collection)."""
    gc.collect()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return count


def attempt(db: Any) -> tuple[BaseException, float]:
    """Check a connection out through Django; return the error and how long it took."""
    started = time.monotonic()
    with pytest.raises(OperationalError) as info:
        db.ensure_connection()
    return info.value, time.monotonic() - started


def failed_sessions(server: PrivateMariaDB) -> list[tuple[Any, ...]]:
    """Sessions on the server of the application user, of users that do not exist, or not authenticated yet."""
    conn = server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT ID, USER, COMMAND, STATE FROM information_schema.PROCESSLIST "
            "WHERE USER IN (%s, 'nobody_here', 'unauthenticated user')",
            (USER,),
        )
        return list(cursor.fetchall())
    finally:
        conn.close()


def check_failures(
    target: Any, expected_code: int, expected_text: str, figures: Callable[..., None]
) -> list[tuple[BaseException, float]]:
    """Make :data:`ATTEMPTS` checkouts that must all fail with *expected_code*; check nothing is held."""
    db = target.wrapper()
    try:
        failures = [attempt(db) for _ in range(ATTEMPTS)]
        assert db.connection is None
    finally:
        db.close()
    stats = target.stats()
    error, elapsed = failures[0]
    cause = error.__cause__
    figures(
        code=cause.args[0] if isinstance(cause, MySQLdb.Error) else None,
        message=str(cause.args[1]) if isinstance(cause, MySQLdb.Error) else repr(error),
        checkout_s=max(seconds for _, seconds in failures),
        pool_size=stats["pool_size"],
        in_use=stats["connections_in_use"],
        connection_errors=stats["connections_errors"],
    )
    for error, elapsed in failures:
        cause = error.__cause__
        assert type(cause) is MySQLdb.OperationalError, repr(error)  # the driver's error, not PoolTimeout
        assert cause.args[0] == expected_code, cause.args
        assert expected_text in str(cause.args[1]), cause.args
        assert error.args == cause.args  # Django's OperationalError carries the same code and message
        assert elapsed <= TIMEOUT + 1.0 + TOLERANCE
    assert (stats["pool_size"], stats["pool_available"], stats["connections_in_use"]) == (0, 0, 0)
    assert (stats["connections_num"], stats["connections_errors"]) == (0, ATTEMPTS)
    assert (stats["requests_num"], stats["requests_errors"], stats["requests_timeouts"]) == (0, ATTEMPTS, 0)
    return failures


@pytest.fixture
def sockets_before() -> Iterator[int]:
    """The process's open sockets before the test: none may be added by it."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count sockets")
    before = open_sockets()
    yield before


@pytest.mark.parametrize(
    ("behaviour", "code", "text"),
    [
        ("http", 2013, HANDSHAKE_LOST),
        ("http_first", 2013, HANDSHAKE_LOST),
        ("garbage", 2013, "Lost connection to server at"),
        ("protocol_9", 2007, "Protocol mismatch"),
    ],
    ids=["http", "http_first", "garbage", "protocol_9"],
)
def test_a_server_that_is_not_mysql(
    pool_target: PoolTargetFactory,
    sockets_before: int,
    figures: Callable[..., None],
    behaviour: str,
    code: int,
    text: str,
) -> None:
    server = NotMySQL(behaviour)
    try:
        target = pool_target({"max_size": 1, "timeout": TIMEOUT})
        target.settings.update(HOST="127.0.0.1", PORT=str(server.port))
        check_failures(target, code, text, figures)
        wait_until(lambda: server.closed_by_client == server.accepted, 5.0, "the client left a socket half-open")
        assert server.accepted == ATTEMPTS
    finally:
        server.close()
    target.close()
    assert open_sockets() <= sockets_before


def test_nothing_listening(pool_target: PoolTargetFactory, sockets_before: int, figures: Callable[..., None]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    target = pool_target({"max_size": 1, "timeout": TIMEOUT})
    target.settings.update(HOST="127.0.0.1", PORT=str(port))
    check_failures(target, 2002, "Can't connect to server on '127.0.0.1'", figures)
    target.close()
    assert open_sockets() <= sockets_before


@pytest.mark.parametrize(
    ("settings", "code", "text"),
    [
        ({"PASSWORD": "wrong-secret"}, 1045, f"Access denied for user '{USER}'@'127.0.0.1' (using password: YES)"),
        ({"USER": "nobody_here"}, 1045, "Access denied for user 'nobody_here'@'127.0.0.1'"),
        ({"USER": "root", "PASSWORD": "", "NAME": "no_such_db"}, 1049, "Unknown database 'no_such_db'"),
        # Without privileges on it, the server does not say whether a database exists.
        ({"NAME": "no_such_db"}, 1044, f"Access denied for user '{USER}'@'127.0.0.1' to database 'no_such_db'"),
        ({"NAME": "mysql"}, 1044, f"Access denied for user '{USER}'@'127.0.0.1' to database 'mysql'"),
    ],
    ids=["wrong_password", "unknown_user", "unknown_database", "unknown_database_unprivileged", "forbidden_database"],
)
def test_refused_by_the_server(
    private_server: PrivateMariaDB,
    pool_target: PoolTargetFactory,
    sockets_before: int,
    figures: Callable[..., None],
    settings: dict[str, str],
    code: int,
    text: str,
) -> None:
    target = pool_target({"max_size": 1, "timeout": TIMEOUT})
    target.settings.update(settings)
    check_failures(target, code, text, figures)
    wait_until(lambda: not failed_sessions(private_server), 5.0, "a failed attempt left a session on the server")
    target.close()
    assert open_sockets() <= sockets_before
