"""A private primary and its asynchronous replica (MariaDB GTID replication) on loopback.

Both servers write a binary log (``log_slave_updates``), so that either can
be the primary; the replica runs ``read_only=1`` and replicates with
``MASTER_USE_GTID=slave_pos``. The scenarios kill the primary, promote the
replica and bring the old primary back read-only; :meth:`ReplicationPair.restore`
rebuilds the pair from empty data directories (a few seconds) whenever a test
left it in another shape.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import MySQLdb
import MySQLdb.cursors

from tests.clusters.node import ClusterNode, free_ports
from tests.faults.mariadb import Unavailable

__all__ = ["ReplicationPair"]

REPL_USER = "repl"
REPL_PASSWORD = "repl-secret"


def _cnf(basedir: Path, server_id: int) -> str:
    return f"""\
[mysqld]
server_id = {server_id}
log_slave_updates = ON
binlog_format = ROW
relay_log = relay-bin
skip_slave_start = ON
innodb_buffer_pool_size = 32M
innodb_flush_log_at_trx_commit = 1
sync_binlog = 1
tmpdir = {basedir}
"""


class ReplicationPair:
    """Two servers under *basedir*: :attr:`primary` and :attr:`replica` (roles; :meth:`promote_replica` swaps them).

    :attr:`servers` keeps the servers in their original order (``server1``
    started as the primary), as a ``HOST`` list names them (:attr:`hosts`).
    """

    def __init__(self, basedir: Path) -> None:
        ports = free_ports(2)
        self.servers = [
            # --log-bin on the command line: it must come after PrivateMariaDB's --skip-log-bin
            ClusterNode(
                basedir / f"server{i}",
                f"server{i}",
                port,
                _cnf(basedir / f"server{i}", i),
                server_options=["--log-bin=mysql-bin"],
            )
            for i, port in enumerate(ports, start=1)
        ]
        self.primary, self.replica = self.servers
        #: Seconds the last :meth:`start` took.
        self.started_in = 0.0

    def __repr__(self) -> str:
        return f"<ReplicationPair primary={self.primary!r} replica={self.replica!r}>"

    @property
    def hosts(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2``: the servers in their original order, for ``HOST``."""
        return ",".join(server.address for server in self.servers)

    def log_tails(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {s.name} ({s.log_file}):\n{s.log_tail(chars)}" for s in self.servers)

    # -- life cycle -------------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> float:
        """Start both servers and replication from :attr:`primary` to :attr:`replica`; return the seconds taken."""
        began = time.monotonic()
        for server in self.servers:
            server.start(timeout)
        self.primary.query(f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'127.0.0.1' IDENTIFIED BY '{REPL_PASSWORD}'")
        self.primary.query(f"GRANT REPLICATION SLAVE ON *.* TO '{REPL_USER}'@'127.0.0.1'")
        self.replica.query("SET GLOBAL read_only = 1")
        self.replicate(self.replica, self.primary)
        self.wait_replicated(timeout)
        self.started_in = time.monotonic() - began
        return self.started_in

    def stop(self) -> None:
        """Stop both servers (idempotent; also run at exit)."""
        for server in self.servers:
            server.stop()

    def provision(self) -> None:
        """Create the application database and user on the primary; wait until the replica has them."""
        self.primary.provision()
        self.wait_replicated()

    @staticmethod
    def replicate(replica: ClusterNode, primary: ClusterNode, position: str = "slave_pos") -> None:
        """``CHANGE MASTER TO`` *primary* with ``MASTER_USE_GTID=``\\ *position*; ``START SLAVE``."""
        replica.query(
            f"CHANGE MASTER TO MASTER_HOST='{primary.host}', MASTER_PORT={primary.port}, "
            f"MASTER_USER='{REPL_USER}', MASTER_PASSWORD='{REPL_PASSWORD}', "
            f"MASTER_USE_GTID={position}, MASTER_CONNECT_RETRY=1"
        )
        replica.query("START SLAVE")

    @staticmethod
    def slave_status(server: ClusterNode) -> dict[str, Any]:
        """``SHOW SLAVE STATUS`` as a dict (empty when *server* replicates from nobody)."""
        conn = server.connect()
        try:
            cursor = conn.cursor(MySQLdb.cursors.DictCursor)
            cursor.execute("SHOW SLAVE STATUS")
            row = cursor.fetchone()
            return dict(row) if row else {}
        finally:
            conn.close()

    def caught_up(self, timeout: float = 5.0) -> bool:
        """Whether the replica applies everything the primary has logged within *timeout* seconds
        (``False`` too when its replication stopped, e.g. on a GTID the new primary never had)."""
        position = str(self.primary.query("SELECT @@gtid_binlog_pos")[0][0])
        ((reached,),) = self.replica.query("SELECT MASTER_GTID_WAIT(%s, %s)", (position, timeout))
        return bool(reached == 0)

    def wait_replicated(self, timeout: float = 30.0) -> float:
        """Wait until the replica has applied everything the primary has logged; return the seconds taken."""
        began = time.monotonic()
        if not self.caught_up(timeout):
            status = {k: v for k, v in self.slave_status(self.replica).items() if "Error" in k or "Running" in k}
            raise Unavailable(f"the replica did not catch up with the primary within {timeout} s: {status}")
        return time.monotonic() - began

    # -- failover ------------------------------------------------------------------------

    def kill_primary(self) -> None:
        """``SIGKILL`` the primary: what it logged but did not ship yet is lost to the replica."""
        self.primary.kill()

    def promote_replica(self) -> None:
        """Make the replica the primary (``STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0``).

        The old primary becomes :attr:`replica` (down until
        :meth:`restart_old_primary_read_only`).
        """
        promoted = self.replica
        promoted.query("STOP SLAVE")
        promoted.query("RESET SLAVE ALL")
        promoted.query("SET GLOBAL read_only = 0")
        self.primary, self.replica = promoted, self.primary

    def restart_old_primary_read_only(self, *, replicate: bool = True, timeout: float = 60.0) -> float:
        """Start the old primary with ``--read-only``; with *replicate*, make it a replica of the new primary.

        It resumes from its own last GTID (``MASTER_USE_GTID=current_pos``),
        which the new primary's binary log holds unless the crash lost writes
        the new primary never received. Returns :attr:`ready_at` of the server.
        """
        old = self.replica
        if "--read-only" not in old.server_options:
            old.server_options.append("--read-only")  # read-only from its first connection on, and on restarts
        ready = old.start(timeout)
        if replicate:
            self.replicate(old, self.primary, "current_pos")
        return ready

    # -- back to the starting state ----------------------------------------------------------

    def _as_started(self) -> bool:
        if self.primary is not self.servers[0] or not all(server.running for server in self.servers):
            return False
        try:
            status = self.slave_status(self.replica)
            read_only = (self.primary.variable("read_only"), self.replica.variable("read_only"))
        except MySQLdb.Error:
            return False
        running = (status.get("Slave_IO_Running"), status.get("Slave_SQL_Running"))
        return running == ("Yes", "Yes") and read_only == ("OFF", "ON")

    def restore(self, timeout: float = 60.0) -> None:
        """Back to the starting state: ``server1`` primary, ``server2`` its read-only replica, caught up,
        default globals, no session of the application user. Rebuilt from scratch when a test changed roles."""
        if not self._as_started():
            self.rebuild(timeout)
        self.wait_replicated(timeout)
        for server in self.servers:
            server.restore()

    def rebuild(self, timeout: float = 60.0) -> None:
        """Stop both servers, empty their data directories, start the pair again and provision it."""
        self.stop()
        for server in self.servers:
            shutil.rmtree(server.datadir, ignore_errors=True)
            if "--read-only" in server.server_options:
                server.server_options.remove("--read-only")
        self.primary, self.replica = self.servers
        self.start(timeout)
        self.provision()
