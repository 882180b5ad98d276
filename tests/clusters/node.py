"""One server of a private cluster: a :class:`~tests.faults.mariadb.PrivateMariaDB` on ports chosen together.

Several servers started side by side need distinct ports, chosen at once
(:func:`free_ports`); a Galera node also needs an option file of its own,
because the state transfer scripts (``wsrep_sst_mariabackup``) and
``mariabackup`` read the server's option file: with ``--no-defaults`` they
would read ``/etc/mysql/my.cnf``, the shared server's, and could connect to
it. :class:`ClusterNode` starts ``mariadbd --defaults-file=<its file>``
through a two-line wrapper in place of the program path, and also ends the
state transfer processes a node leaves behind when it is killed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
from pathlib import Path
from typing import Any

import MySQLdb

from tests.faults.mariadb import PrivateMariaDB, Unavailable, find_programs

__all__ = ["GALERA_PROVIDER", "ClusterNode", "free_ports", "galera_missing"]

GALERA_PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")


def galera_missing() -> str | None:
    """Why a Galera cluster cannot run here, naming the package to install; ``None`` when it can."""
    try:
        find_programs()
    except Unavailable as exc:
        return str(exc)
    if not GALERA_PROVIDER.exists():
        return f"no Galera provider at {GALERA_PROVIDER} (Debian: apt-get install galera-4)"
    if shutil.which("mariabackup") is None and shutil.which("mariadb-backup") is None:
        return "mariabackup not found: the state transfer (SST) uses it (Debian: apt-get install mariadb-backup)"
    if shutil.which("socat") is None:
        return "socat not found: the mariabackup state transfer streams through it (Debian: apt-get install socat)"
    return None


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Every port :func:`free_ports` gave out in this process: a cluster's IST and SST ports are bound only
#: during a state transfer, and must not be given to another cluster meanwhile.
_given: set[int] = set()


def free_ports(count: int) -> list[int]:
    """*count* distinct free loopback ports, never given out before in this process.

    They lie below the ephemeral range: a client retrying a connection to a
    port nobody listens on yet (a joiner during its state transfer) can
    otherwise be given that very port as its source port and connect to
    itself, and the server then fails to bind it. The search starts at a
    PID-dependent place, so that two test runs rarely compete for ports.
    """
    last = _ephemeral_low() - 1
    first = max(1024, last - 7999)
    span = last - first + 1
    start = (os.getpid() * 37) % span
    held: list[socket.socket] = []
    try:
        for step in range(span):
            port = first + (start + step) % span
            if port in _given:
                continue
            probe = socket.socket()
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                probe.close()
                continue
            held.append(probe)
            if len(held) == count:
                ports = [probe.getsockname()[1] for probe in held]
                _given.update(ports)
                return ports
    finally:
        for probe in held:
            probe.close()
    raise Unavailable(f"fewer than {count} free ports in 127.0.0.1:{first}-{last}")


def _descendants(pid: int) -> list[int]:
    """The PIDs of every process below *pid* (read from ``/proc``; empty where there is none)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found.extend(children)
        todo.extend(children)
    return found


class ClusterNode(PrivateMariaDB):
    """A private server named *name* on *port*, started with the option file *cnf* (its text).

    :param cnf: the option file's text (``[mysqld]``, ``[sst]``...); the
        command line of :class:`PrivateMariaDB` (data directory, port,
        socket, log) comes after it and wins.
    """

    def __init__(self, basedir: Path, name: str, port: int, cnf: str, **kwargs: Any) -> None:
        basedir.mkdir(parents=True, exist_ok=True)
        super().__init__(basedir, **kwargs)
        self.name = name
        self.port = port
        self.option_file = basedir / "my.cnf"
        self.option_file.write_text(cnf)
        real = self.mariadbd
        wrapper = basedir / "mariadbd"
        # PrivateMariaDB runs "<mariadbd> --no-defaults ...": read this node's file instead (same PID, exec).
        wrapper.write_text(
            f'#!/bin/sh\n[ "$1" = --no-defaults ] && shift\nexec {real} --defaults-file={self.option_file} "$@"\n'
        )
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        self.mariadbd = str(wrapper)
        #: The size of the error log when the node last started: what it wrote since is :meth:`log_since_start`.
        self.log_offset = 0

    def __repr__(self) -> str:
        return f"<ClusterNode {self.name} {self.host}:{self.port} {'running' if self.running else 'stopped'}>"

    def _server_options(self) -> list[str]:
        # wsrep_sst_mariabackup hands --innodb-buffer-pool-size from the server's command line on to
        # mariadb-backup, which rejects it ("unknown variable"): the option file sets it instead.
        return [option for option in super()._server_options() if not option.startswith("--innodb-buffer-pool-size")]

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``, as it goes in a ``HOST`` list."""
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> float:
        if not self.running:
            self.log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        return super().start(timeout)

    def stop(self, timeout: float = 60.0) -> None:
        """Shut down cleanly (``SIGTERM``), then end any state transfer process it left."""
        self._end_with_children(lambda: super(ClusterNode, self).stop(timeout))

    def kill(self) -> None:
        """Crash the server (``SIGKILL``) and any state transfer process it was running."""
        self._end_with_children(super().kill)

    def _end_with_children(self, end: Any) -> None:
        process = self.process
        family = _descendants(process.pid) if process is not None and process.poll() is None else []
        end()
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_since_start(self) -> str:
        """What the error log says since the node last started."""
        try:
            with self.log_file.open("rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    # -- server state ---------------------------------------------------------------

    def query(self, sql: str, args: tuple[object, ...] | None = None) -> list[tuple[Any, ...]]:
        """Run *sql* as root on a new connection; return its rows."""
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(sql, args)
            return list(cursor.fetchall())
        finally:
            conn.close()

    def status(self, name: str) -> str:
        """A global status value (``''`` when the server has no such variable)."""
        rows = self.query("SHOW GLOBAL STATUS LIKE %s", (name,))
        return str(rows[0][1]) if rows else ""

    def variable(self, name: str) -> str:
        rows = self.query("SHOW GLOBAL VARIABLES LIKE %s", (name,))
        return str(rows[0][1]) if rows else ""

    def answers(self) -> bool:
        """Whether the server accepts a root connection now."""
        if not self.running:
            return False
        try:
            self.connect().close()
        except MySQLdb.Error:
            return False
        return True
