"""A private MariaDB Galera cluster on loopback: three ``mariadbd`` nodes with the ``galera-4`` provider.

Each node has its own data directory, SQL port, group communication port
(``gmcast.listen_addr``), IST receive address (``ist.recv_addr``) and SST
receive address, all on 127.0.0.1. Node 1 bootstraps the cluster
(``--wsrep-new-cluster``, that one start only); the others join it one after
the other with a full state transfer (``mariabackup``) into an empty data
directory. A node stopped or killed later rejoins with a plain start and
catches up by incremental state transfer (IST) from the donor's gcache.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import MySQLdb

from tests.clusters.node import GALERA_PROVIDER, ClusterNode, free_ports
from tests.faults.mariadb import USER, Unavailable, socket_path

__all__ = ["GaleraCluster"]

CLUSTER_NAME = "dmp-tests"
REJECT_VALUES = ("NONE", "ALL", "ALL_KILL")
#: How long a crashed node may stay silent before the others evict it (Galera's defaults: 5 s and 15 s).
SUSPECT_TIMEOUT = "PT3S"
INACTIVE_TIMEOUT = "PT8S"


def _cnf(basedir: Path, name: str, port: int, gcomm: int, ist: int, sst: int, members: list[int]) -> str:
    provider_options = ";".join(
        [
            f"gmcast.listen_addr=tcp://127.0.0.1:{gcomm}",
            f"ist.recv_addr=127.0.0.1:{ist}",
            "gcache.size=64M",  # big enough that a node coming back catches up by IST
            "gcache.recover=yes",  # a node restarted after a crash can still donate IST
            f"evs.suspect_timeout={SUSPECT_TIMEOUT}",
            f"evs.inactive_timeout={INACTIVE_TIMEOUT}",
        ]
    )
    return f"""\
[mysqld]
wsrep_on = ON
wsrep_provider = {GALERA_PROVIDER}
wsrep_cluster_name = {CLUSTER_NAME}
wsrep_cluster_address = gcomm://{",".join(f"127.0.0.1:{member}" for member in members)}
wsrep_node_name = {name}
wsrep_node_address = 127.0.0.1:{gcomm}
wsrep_node_incoming_address = 127.0.0.1:{port}
wsrep_sst_receive_address = 127.0.0.1:{sst}
wsrep_sst_method = mariabackup
wsrep_sst_auth = root:
wsrep_provider_options = "{provider_options}"
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
innodb_flush_log_at_trx_commit = 2
innodb_buffer_pool_size = 32M
tmpdir = {basedir}

[sst]
sst-log-archive-dir = {basedir}/sst-log-archive
# socat options: the joiner listens on loopback only (and the donor connects from it)
sockopt = bind=127.0.0.1
"""


class GaleraNode(ClusterNode):
    """A node: :meth:`start` after a crash first reads the position the node reached (``--wsrep-recover``).

    A node killed with ``SIGKILL`` leaves ``seqno: -1`` in ``grastate.dat``;
    started as it is, it would ask for a full state transfer (SST). With its
    real position (``--wsrep-start-position``) it catches up by IST, as the
    ``galera_recovery`` step of the packaged service arranges.
    """

    def start(self, timeout: float = 60.0) -> float:
        if self.running:
            return self.ready_at
        position = self.recover_position()
        option = [f"--wsrep-start-position={position}"] if position else []
        self.server_options.extend(option)
        try:
            return super().start(timeout)
        finally:
            for added in option:
                self.server_options.remove(added)

    def recover_position(self) -> str | None:
        """``uuid:seqno`` committed last, after a crash; ``None`` after a clean stop or when unknown."""
        grastate = self.datadir / "grastate.dat"
        if not grastate.exists() or not re.search(r"^seqno:\s*-1\s*$", grastate.read_text(), re.MULTILINE):
            return None
        log = self.basedir / "wsrep-recover.log"
        log.unlink(missing_ok=True)
        command = [
            self.mariadbd,
            f"--datadir={self.datadir}",
            f"--tmpdir={self.basedir}",
            f"--log-error={log}",
            f"--pid-file={self.basedir / 'recover.pid'}",
            f"--socket={socket_path(self.basedir, 'recover.sock')}",  # never the default: the shared server's
            "--skip-networking",
            "--wsrep-recover",
            *self._server_options(),
        ]
        subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False)
        found = re.findall(r"WSREP: Recovered position: (\S+:-?\d+)", log.read_text() if log.exists() else "")
        return found[-1] if found and not found[-1].endswith(":-1") else None

    def seqno(self) -> int:
        """The last transaction the stopped node committed (``-1``: unknown): what to bootstrap from."""
        grastate = self.datadir / "grastate.dat"
        found = re.search(r"^seqno:\s*(-?\d+)", grastate.read_text() if grastate.exists() else "", re.MULTILINE)
        seqno = int(found.group(1)) if found else -1
        if seqno == -1:
            position = self.recover_position()
            seqno = int(position.rsplit(":", 1)[1]) if position else -1
        return seqno


class GaleraCluster:
    """*size* Galera nodes under *basedir*; :meth:`start` bootstraps them, :meth:`stop` ends them all.

    The nodes are :class:`GaleraNode` objects
    (``.host``, ``.port``, ``.address``, ``.start()``, ``.stop()``,
    ``.kill()``, ``.connect()``, ``.running``).
    """

    def __init__(self, basedir: Path, size: int = 3) -> None:
        ports = free_ports(4 * size)
        sql, gcomm, ist, sst = (ports[i * size : (i + 1) * size] for i in range(4))
        self.nodes: list[GaleraNode] = []
        for i in range(size):
            name, home = f"node{i + 1}", basedir / f"node{i + 1}"
            cnf = _cnf(home, name, sql[i], gcomm[i], ist[i], sst[i], gcomm)
            self.nodes.append(GaleraNode(home, name, sql[i], cnf))
        #: Seconds the last :meth:`start` took.
        self.started_in = 0.0

    def __repr__(self) -> str:
        return f"<GaleraCluster {self.nodes}>"

    @property
    def hosts(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,...``: the nodes in order, for ``HOST``."""
        return ",".join(node.address for node in self.nodes)

    def log_tails(self, chars: int = 1500) -> str:
        return "\n".join(f"--- {node.name} ({node.log_file}):\n{node.log_tail(chars)}" for node in self.nodes)

    # -- life cycle -------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> float:
        """Bootstrap node 1, join the others one by one (state transfer); return the seconds it took.

        :raises Unavailable: a node did not start or reach ``Synced`` in time (with the logs' tails).
        """
        began = time.monotonic()
        self.bootstrap(self.nodes[0], timeout)
        for node in self.nodes[1:]:
            node.datadir.mkdir(exist_ok=True)  # empty: no mariadb-install-db, the state transfer fills it
            self.start_node(node, timeout)
        self.wait_size(len(self.nodes), timeout)
        self.started_in = time.monotonic() - began
        return self.started_in

    def bootstrap(self, node: GaleraNode, timeout: float = 60.0) -> None:
        """Start *node* as a new cluster (``--wsrep-new-cluster`` for this start only); no other node may run."""
        assert not any(other.running for other in self.nodes), "bootstrap only when the whole cluster is down"
        grastate = node.datadir / "grastate.dat"
        if grastate.exists():  # a cluster that went down entirely: this node is the one to start from
            grastate.write_text(re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", grastate.read_text()))
        node.server_options.append("--wsrep-new-cluster")
        try:
            node.start(timeout)
        finally:
            node.server_options.remove("--wsrep-new-cluster")
        self.wait_synced(node, timeout)

    def start_node(self, node: GaleraNode, timeout: float = 60.0) -> float:
        """Start (or restart) *node*, joining the running cluster; return the seconds until it is ``Synced``."""
        began = time.monotonic()
        node.start(timeout)
        self.wait_synced(node, timeout)
        return time.monotonic() - began

    def rejoin(self, node: GaleraNode, timeout: float = 90.0) -> float:
        """:meth:`start_node`; if *node* cannot rejoin as it is (a state transfer failed), empty its data
        directory and join it again by a full state transfer. Returns the seconds it took."""
        began = time.monotonic()
        try:
            self.start_node(node, timeout)
        except Unavailable:
            node.stop()
            shutil.rmtree(node.datadir, ignore_errors=True)
            node.datadir.mkdir()
            self.start_node(node, timeout)
        return time.monotonic() - began

    def stop(self) -> None:
        """Stop every node, the last one to join first (idempotent; also run at exit)."""
        for node in reversed(self.nodes):
            node.stop()

    @staticmethod
    def state_transfer(node: GaleraNode) -> str:
        """How *node* got its state at its last start: ``"IST"``, ``"SST"`` or ``"none"``, from its error log."""
        log = node.log_since_start()
        if "Proceeding with SST" in log:  # the joiner's script: a full copy (an IST of what came meanwhile follows)
            return "SST"
        if "IST received" in log:
            return "IST"
        return "none"

    # -- waiting for states -----------------------------------------------------------

    def _wait(self, check: Callable[[], str | None], timeout: float, what: str) -> float:
        """Poll *check* (``None`` when done, else what is still wrong) every 50 ms; return the seconds taken."""
        began = time.monotonic()
        while True:
            try:
                wrong = check()
            except MySQLdb.Error as exc:
                wrong = repr(exc)
            if wrong is None:
                return time.monotonic() - began
            if time.monotonic() - began > timeout:
                raise Unavailable(f"{what} within {timeout} s ({wrong}):\n{self.log_tails()}")
            time.sleep(0.05)

    def wait_synced(self, node: GaleraNode, timeout: float = 60.0) -> float:
        """Wait until *node* is ``Synced`` and ``wsrep_ready=ON``; return the seconds it took."""

        def check() -> str | None:
            if not node.running:
                raise Unavailable(f"{node.name} is not running: {node.log_tail()}")
            state, ready = node.status("wsrep_local_state_comment"), node.status("wsrep_ready")
            return None if (state, ready) == ("Synced", "ON") else f"state {state}, ready {ready}"

        return self._wait(check, timeout, f"{node.name} was not Synced")

    def wait_size(self, size: int, timeout: float = 60.0) -> float:
        """Wait until every running node sees a primary component of *size* nodes; return the seconds taken."""

        def check() -> str | None:
            seen = {node.name: node.status("wsrep_cluster_size") for node in self.nodes if node.running}
            return None if all(value == str(size) for value in seen.values()) else f"sizes {seen}"

        return self._wait(check, timeout, f"the cluster size did not become {size}")

    # -- what the scenarios change ------------------------------------------------------

    @staticmethod
    def desync(node: GaleraNode, on: bool = True) -> None:
        """``SET GLOBAL wsrep_desync``: the node leaves flow control and stops being ``Synced``."""
        node.query(f"SET GLOBAL wsrep_desync = {'ON' if on else 'OFF'}")

    @staticmethod
    def reject_queries(node: GaleraNode, value: str) -> None:
        """``SET GLOBAL wsrep_reject_queries`` to ``NONE``, ``ALL`` or ``ALL_KILL``."""
        if value not in REJECT_VALUES:
            raise ValueError(f"wsrep_reject_queries={value!r}: expected one of {REJECT_VALUES}")
        node.query(f"SET GLOBAL wsrep_reject_queries = {value}")

    def provision(self) -> None:
        """Create the application database and user once (on node 1); wait until every node has them."""
        self.nodes[0].provision()
        self._wait(self._missing_user, 30.0, "the application user did not reach every node")

    def _missing_user(self) -> str | None:
        for node in self.nodes:
            if node.running and not node.query("SELECT 1 FROM mysql.user WHERE User = %s", (USER,)):
                return f"no user {USER!r} on {node.name}"
        return None

    def restore(self, timeout: float = 120.0) -> None:
        """Back to the starting state: every node running and ``Synced``, no desync, no rejected queries,
        default globals, no session of the application user."""
        if not any(node.running for node in self.nodes):  # from the node that committed last
            self.bootstrap(max(self.nodes, key=lambda node: (node.seqno(), -self.nodes.index(node))), timeout)
        for node in self.nodes:
            if not node.running:
                self.rejoin(node, timeout)
        self.wait_size(len(self.nodes), timeout)
        for node in self.nodes:
            if node.variable("wsrep_desync") == "ON":
                self.desync(node, False)
            if node.variable("wsrep_reject_queries") != "NONE":
                self.reject_queries(node, "NONE")
            node.restore()
        for node in self.nodes:
            self.wait_synced(node, timeout)
