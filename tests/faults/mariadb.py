"""A private MariaDB server the fault tests may stop, kill, restart and misconfigure.

It has its own data directory (under a temporary directory), port, socket and
pid file, listens on 127.0.0.1 only, and is initialised once per test session
with ``mariadb-install-db``. Nothing the tests do to it (``SET GLOBAL``,
``KILL``, shutdown) can reach the shared server other test runs use.

The server is always stopped by :meth:`PrivateMariaDB.stop` (the session
fixture's finaliser, with an ``atexit`` fallback); the pool connects as a
non-privileged user (:data:`USER`) so that ``max_connections`` applies to it
exactly (MariaDB lets privileged users open one connection more).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pytest

__all__ = [
    "DATABASE",
    "PASSWORD",
    "USER",
    "PrivateMariaDB",
    "Unavailable",
    "find_programs",
    "requires_mariadbd",
    "running_or_skip",
]

DATABASE = "faults"
USER = "app"
PASSWORD = "app-secret"
#: The server's defaults for what the tests change with ``SET GLOBAL``.
DEFAULT_GLOBALS = {"max_connections": 151, "wait_timeout": 28800}


class Unavailable(RuntimeError):
    """The MariaDB server programs are missing or the server cannot be started here."""


def find_programs() -> tuple[str, str]:
    """Return the paths of ``mariadbd`` and ``mariadb-install-db``.

    :raises Unavailable: naming the missing program and how to get it.
    """
    found = []
    for name in ("mariadbd", "mariadb-install-db"):
        path = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None
        )
        if path is None:
            raise Unavailable(
                f"{name} not found on PATH, /usr/sbin or /usr/bin: the fault tests start a private "
                "MariaDB server (Debian: apt-get install mariadb-server)"
            )
        found.append(path)
    return found[0], found[1]


def _missing_programs() -> str | None:
    try:
        find_programs()
    except Unavailable as exc:
        return str(exc)
    return None


_MISSING = _missing_programs()

#: Mark for tests that need the private server: they skip, saying why, when it cannot run here.
requires_mariadbd = pytest.mark.skipif(_MISSING is not None, reason=f"no private MariaDB server: {_MISSING}")


@contextlib.contextmanager
def running_or_skip(servers: Any, what: str, logs: Callable[[], str] = lambda: "") -> Iterator[Any]:
    """Start and provision *servers* (a server, cluster or pair), yield them, always stop them;
    skip the test, saying why (and *logs*), when they cannot start here."""
    try:
        servers.start()
        servers.provision()
    except (Unavailable, MySQLdb.Error) as exc:
        servers.stop()
        pytest.skip(f"{what} could not start: {exc}{logs()}")
    try:
        yield servers
    finally:
        servers.stop()


def _free_port(first: int = 33100, last: int = 33999) -> int:
    """A free loopback port in 33100-33999 (the search starts at a PID-dependent place)."""
    span = last - first + 1
    start = os.getpid() % span
    for step in range(span):
        port = first + (start + step) % span
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise Unavailable(f"no free port in 127.0.0.1:{first}-{last} for the private MariaDB server")


#: The longest Unix socket path the server accepts (``sun_path`` is 108 bytes with its NUL).
_SOCKET_PATH_MAX = 107


def socket_path(basedir: Path, name: str = "mariadbd.sock") -> Path:
    """A server's socket *name*: in *basedir*, or in a short directory of its own when that
    path is too long (a clean clone under a deep CI directory: the server refuses to start)."""
    path = basedir / name
    if len(os.fsencode(path)) <= _SOCKET_PATH_MAX:
        return path
    short = Path(tempfile.mkdtemp(prefix="dmp-sock-"))
    atexit.register(shutil.rmtree, short, ignore_errors=True)
    return short / name


class PrivateMariaDB:
    """One ``mariadbd`` process on a data directory under *basedir*.

    :param basedir: an empty directory owned by the test run.
    :param server_options: more ``mariadbd`` options (e.g. TLS certificates,
        ``--require-secure-transport=ON``).
    :param client_options: more ``MySQLdb.connect()`` arguments for the
        server's own connections (e.g. ``ssl`` when TLS is required).
    """

    def __init__(
        self, basedir: Path, *, server_options: list[str] | None = None, client_options: dict[str, Any] | None = None
    ) -> None:
        self.mariadbd, self.install_db = find_programs()
        self.server_options = list(server_options or [])
        self.client_options = dict(client_options or {})
        self.basedir = basedir
        self.datadir = basedir / "data"
        self.socket = socket_path(basedir)
        self.pid_file = basedir / "mariadbd.pid"
        self.log_file = basedir / "mariadbd.err"
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        #: ``time.monotonic()`` when the server last started accepting connections.
        self.ready_at = 0.0
        atexit.register(self.stop)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<PrivateMariaDB {self.host}:{self.port} {state} datadir={self.datadir}>"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # -- life cycle -------------------------------------------------------------

    def install(self) -> None:
        """Create the data directory (about a second), unless it exists."""
        if self.datadir.exists():
            return
        command = [
            self.install_db,
            "--no-defaults",
            f"--datadir={self.datadir}",
            # its bootstrap server would otherwise clean /tmp of the shared server's #sql* files
            f"--tmpdir={self.basedir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *self._server_options(),
        ]
        log = self.basedir / "install.log"
        with log.open("wb") as out:
            result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
        if result.returncode != 0:
            raise Unavailable(f"mariadb-install-db failed ({result.returncode}): {log.read_text()[-2000:]}")

    def _server_options(self) -> list[str]:
        options = [
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=8M",
            "--skip-log-bin",
        ]
        if os.geteuid() == 0:
            options.append("--user=root")  # mariadbd refuses to run as root without it
        return options

    def start(self, timeout: float = 60.0) -> float:
        """Start the server and wait until it accepts connections; return :attr:`ready_at`.

        :raises Unavailable: the server exited or did not answer within *timeout*.
        """
        if self.running:
            return self.ready_at
        self.install()
        command = [
            self.mariadbd,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--socket={self.socket}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log_file}",
            f"--tmpdir={self.basedir}",
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--performance-schema=OFF",
            "--innodb-buffer-pool-dump-at-shutdown=OFF",
            "--innodb-buffer-pool-load-at-startup=OFF",
            *self._server_options(),
            *self.server_options,
        ]
        with (self.basedir / "mariadbd.out").open("ab") as out:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        self.ready_at = self._wait_ready(timeout)
        return self.ready_at

    def _wait_ready(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.running:
                self.process = None
                raise Unavailable(f"mariadbd exited while starting: {self.log_tail()}")
            try:
                conn: Any = MySQLdb.connect(
                    host=self.host, port=self.port, user="root", connect_timeout=2, **self.client_options
                )
            except MySQLdb.OperationalError as exc:
                last = exc
                time.sleep(0.01)
                continue
            ready = time.monotonic()
            conn.close()
            return ready
        self.stop()
        raise Unavailable(f"mariadbd did not accept connections within {timeout} s ({last}): {self.log_tail()}")

    def stop(self, timeout: float = 60.0) -> None:
        """Shut the server down cleanly (``SIGTERM``); ``SIGKILL`` it after *timeout* (idempotent)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash the server (``SIGKILL``): no goodbye to any client."""
        self._end(signal.SIGKILL, 30.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30.0)

    def restart(self, *, crash: bool = False, down_for: float = 0.0) -> float:
        """Stop (or crash) the server, stay down *down_for* seconds, start it; return :attr:`ready_at`."""
        if crash:
            self.kill()
        else:
            self.stop()
        time.sleep(down_for)
        return self.start()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no error log)"

    # -- clients ----------------------------------------------------------------

    def connect(self, *, user: str = "root", password: str = "", **kwargs: Any) -> Any:
        """A plain autocommit connection (root by default) to the private server (a ``MySQLdb.Connection``)."""
        options = {**self.client_options, **kwargs}
        conn: Any = MySQLdb.connect(
            host=self.host, port=self.port, user=user, password=password, connect_timeout=5, **options
        )
        conn.autocommit(True)
        return conn

    def provision(self) -> None:
        """Create :data:`DATABASE` and :data:`USER` (idempotent)."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{DATABASE}`")
            cursor.execute(f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
            cursor.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'127.0.0.1'")
        finally:
            conn.close()

    def restore(self) -> None:
        """Put back the globals tests change and drop every session of :data:`USER`."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            for name, value in DEFAULT_GLOBALS.items():
                cursor.execute(f"SET GLOBAL {name} = {value}")
            cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (USER,))
            for (conn_id,) in cursor.fetchall():
                with contextlib.suppress(MySQLdb.OperationalError):  # gone already
                    cursor.execute(f"KILL CONNECTION {int(conn_id)}")
        finally:
            conn.close()

    def sessions(self, user: str = USER) -> list[int]:
        """The connection ids *user* has open now."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s ORDER BY ID", (user,))
            return [int(row[0]) for row in cursor.fetchall()]
        finally:
            conn.close()
