"""The benchmark database (``dmp_bench.item``), server facts and status counters.

Everything here uses its own connection, outside any mode under test.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import MySQLdb

from bench.modes import DATABASE_NAME, ROWS, Server


def connect(server: Server, port: int | None = None) -> Any:
    """A plain mysqlclient connection to *server* (or to *port* on its host: a proxy)."""
    return MySQLdb.connect(
        host=server.host,
        port=port or server.port,
        user=server.user,
        password=server.password,
        connect_timeout=10,
        **server.tls_options(),
    )


def prepare(server: Server) -> None:
    """Create ``dmp_bench.item`` with :data:`ROWS` rows unless it is already there."""
    conn = connect(server)
    try:
        cur = conn.cursor()
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {DATABASE_NAME}")
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {DATABASE_NAME}.item ("
            "id INT NOT NULL PRIMARY KEY, name VARCHAR(40) NOT NULL, "
            "bucket INT NOT NULL, KEY item_bucket (bucket)) ENGINE=InnoDB"
        )
        cur.execute(f"SELECT COUNT(*) FROM {DATABASE_NAME}.item")
        if cur.fetchone()[0] != ROWS:
            cur.execute(f"DELETE FROM {DATABASE_NAME}.item")
            rows = [(i, f"item {i}", i % 50) for i in range(1, ROWS + 1)]
            cur.executemany(f"INSERT INTO {DATABASE_NAME}.item (id, name, bucket) VALUES (%s, %s, %s)", rows)
            conn.commit()
    finally:
        conn.close()


def server_pid(conn: Any) -> int | None:
    """The server's process id when it runs on this machine and its pid file is readable, else ``None``."""
    cur = conn.cursor()
    cur.execute("SELECT @@GLOBAL.pid_file")
    try:
        pid = int(Path(cur.fetchone()[0]).read_text().split()[0])
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError, TypeError):
        return None
    return pid if comm in ("mariadbd", "mysqld") else None


def process_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) process *pid* has used (``/proc/<pid>/stat``), or ``None``."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def global_status(conn: Any, *names: str) -> dict[str, int]:
    """``SHOW GLOBAL STATUS`` values of *names* (a snapshot, no new connection)."""
    cur = conn.cursor()
    cur.execute("SHOW GLOBAL STATUS WHERE Variable_name IN (" + ", ".join(["%s"] * len(names)) + ")", names)
    return {name: int(value) for name, value in cur.fetchall()}


def server_facts(conn: Any) -> dict[str, Any]:
    """Version, limits and defaults of the server, and how busy it is with other clients."""
    cur = conn.cursor()
    cur.execute(
        "SELECT VERSION(), @@GLOBAL.max_connections, @@GLOBAL.tx_isolation, @@GLOBAL.thread_handling, "
        "@@GLOBAL.innodb_buffer_pool_size"
    )
    version, max_conn, isolation, handling, buffer_pool = cur.fetchone()
    before = global_status(conn, "Questions", "Connections")
    time.sleep(1.0)
    after = global_status(conn, "Questions", "Connections", "Threads_connected")
    return {
        "version": version,
        "max_connections": int(max_conn),
        "isolation": isolation,
        "thread_handling": handling,
        "innodb_buffer_pool_mb": int(buffer_pool) // (1 << 20),
        # Our own SHOW GLOBAL STATUS counts 1 question; the rest is other clients.
        "background_questions_per_s": after["Questions"] - before["Questions"] - 1,
        "background_connections_per_s": after["Connections"] - before["Connections"],
        "threads_connected": after["Threads_connected"],
    }


def ping_rtt_ms(server: Server, port: int | None = None, count: int = 200) -> float:
    """Median ``COM_PING`` round trip in ms, directly or through a proxy on *port*."""
    conn = connect(server, port)
    try:
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            conn.ping()
            samples.append(time.perf_counter() - started)
    finally:
        conn.close()
    samples.sort()
    return samples[len(samples) // 2] * 1000
