"""Read the snapshots published by :mod:`django_mysql_pooled.monitoring.publisher`, and the server's view.

Only what can be trusted is returned: symlinks, other users' files, files with
loose permissions and malformed files are skipped with a warning; files of
dead processes and stale ones are removed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django_mysql_pooled.monitoring.publisher import (
    STALE_AFTER,
    private_dir_problem,
    private_problem,
    stats_dir,
    unlink,
)

__all__ = ["ScanResult", "pid_alive", "query_server", "read_snapshots"]

_MAX_BYTES = 1 << 20
_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"


@dataclasses.dataclass
class ScanResult:
    """What :func:`read_snapshots` found: live snapshots, warnings and removed files."""

    snapshots: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    removed: list[str] = dataclasses.field(default_factory=list)


def pid_alive(pid: int) -> bool:
    """Whether process *pid* exists on this machine (zombies count as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _file_problem(st: os.stat_result) -> str | None:
    return private_problem(st, directory=False)


def _valid(data: object) -> bool:
    if not isinstance(data, dict):
        return False
    stats, pid = data.get("stats"), data.get("pid")
    return (
        isinstance(pid, int)
        and not isinstance(pid, bool)
        and pid > 0
        and isinstance(data.get("alias"), str)
        and isinstance(data.get("host"), str)
        and isinstance(data.get("timestamp"), int | float)
        and isinstance(data.get("server"), dict)
        and isinstance(data.get("options"), dict)
        and isinstance(stats, dict)
        and all(isinstance(k, str) and type(v) is int for k, v in stats.items())
        and _valid_hosts(data.get("hosts", []))
    )


#: The text fields of a snapshot's ``hosts`` entries; every other field is an integer.
_HOST_TEXT = ("host", "state", "reason")


def _valid_hosts(hosts: object) -> bool:
    """A snapshot's ``hosts`` (several servers, see ``publisher.host_rows``): a list of
    ``{"host": str, "state": str, "reason": str, <key>: int...}``."""
    return isinstance(hosts, list) and all(
        isinstance(entry, dict)
        and all(isinstance(entry.get(key), str) for key in _HOST_TEXT)
        and all(isinstance(k, str) and (k in _HOST_TEXT or type(v) is int) for k, v in entry.items())
        for entry in hosts
    )


def _load(path: Path) -> object:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as f:
        return json.loads(f.read(_MAX_BYTES + 1)[:_MAX_BYTES].decode("utf-8"))


def _read_one(path: Path, result: ScanResult, now: float, host: str) -> None:
    st = os.lstat(path)
    problem = _file_problem(st)
    if problem is not None:
        result.warnings.append(f"skipped {path}: it {problem}")
        return
    try:
        data = _load(path)
    except (OSError, ValueError) as exc:
        result.warnings.append(f"skipped {path}: malformed snapshot ({exc})")
        return
    if not _valid(data):
        result.warnings.append(f"skipped {path}: malformed snapshot (missing or invalid fields)")
        return
    assert isinstance(data, dict)
    if data["host"] == host and not pid_alive(data["pid"]):
        reason = f"process {data['pid']} is not running"
    elif now - data["timestamp"] > STALE_AFTER:
        reason = f"not updated for {now - data['timestamp']:.0f} s"
    else:
        result.snapshots.append(data)
        return
    unlink(path)
    result.removed.append(f"removed {path}: {reason}")


def read_snapshots(directory: Path | None = None) -> ScanResult:
    """Read the live snapshots in *directory* (default :func:`stats_dir`).

    Files of dead processes and stale ones are removed; symlinks, other users'
    files, files with loose permissions and malformed files are skipped with a
    warning. Never raises for the contents of the directory.
    """
    directory = stats_dir() if directory is None else directory
    result = ScanResult()
    try:
        problem = private_dir_problem(directory)
    except FileNotFoundError:
        return result
    if problem is not None:
        result.warnings.append(f"ignored stats directory {str(directory)!r}: it {problem}")
        return result
    now, host = time.time(), socket.gethostname()
    for path in sorted(directory.iterdir()):
        if path.name.startswith(_TMP_PREFIX) or not path.name.endswith(_SUFFIX):
            continue
        try:
            _read_one(path, result, now, host)
        except FileNotFoundError:
            continue  # removed meanwhile: its pool closed
    result.snapshots.sort(key=lambda s: (s["alias"], s["host"], s["pid"]))
    return result


def query_server(params: Mapping[str, Any]) -> dict[str, Any]:
    """The server's view over a new, unpooled connection opened with MySQLdb *params*.

    Returns ``max_connections``, ``max_user_connections``, ``wait_timeout``,
    ``threads_connected`` and ``user_connections`` (this user's sessions in
    ``information_schema.PROCESSLIST``); both exclude this connection.

    :raises MySQLdb.Error: the server cannot be reached.
    """
    import MySQLdb

    kwargs = {k: v for k, v in params.items() if k != "pool"}
    kwargs.setdefault("connect_timeout", 5)
    conn: Any = MySQLdb.connect(**kwargs)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT @@max_connections, @@max_user_connections, @@wait_timeout, USER()")
        max_conn, max_user, wait_timeout, current = cursor.fetchone()
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        threads = int(cursor.fetchone()[1])
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s AND ID != CONNECTION_ID()",
            [str(current).rpartition("@")[0] or kwargs.get("user", "")],
        )
        (user_conns,) = cursor.fetchone()
    finally:
        conn.close()
    return {
        "max_connections": int(max_conn),
        "max_user_connections": int(max_user),
        "wait_timeout": int(wait_timeout),
        "threads_connected": threads - 1,  # not this connection
        "user_connections": int(user_conns),
    }
