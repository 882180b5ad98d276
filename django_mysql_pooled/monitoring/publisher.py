"""Publish each pool's statistics to a private directory, and read them back.

Every process with an open pool writes one JSON snapshot per alias (pid, host,
alias, server, pool options, stats, timestamp; with several servers, ``hosts``:
each one's state and sizes, in the configured order; never the password) into the
stats directory: owner-only permissions, atomic replace, at most about once a
second and only when the stats changed (plus a heartbeat), removed when the
pool closes or the process exits. ``manage.py poolstats`` reads them with
:func:`django_mysql_pooled.monitoring.snapshots.read_snapshots`.

The directory is ``settings.DJANGO_MYSQL_POOLED_STATS_DIR``, else the
``DJANGO_MYSQL_POOLED_STATS_DIR`` environment variable, else
``<tempfile.gettempdir()>/django_mysql_pooled-<uid>``; read at call time.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
import stat
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["SETTING", "STALE_AFTER", "Publisher", "host_rows", "publisher_for", "stats_dir"]

logger = logging.getLogger(__name__)

#: The Django setting (and environment variable) naming the stats directory.
SETTING = "DJANGO_MYSQL_POOLED_STATS_DIR"
#: Seconds between two writes of a snapshot while its stats keep changing.
MIN_INTERVAL = 0.9
#: Seconds after which an unchanged snapshot is rewritten anyway (a heartbeat).
HEARTBEAT = 10.0
#: Snapshots older than this many seconds are stale: their process stopped publishing.
STALE_AFTER = 60.0
_MAX_BYTES = 1 << 20
_SUFFIX = ".json"
_TMP_PREFIX = ".tmp-"


def uid() -> int:
    return os.getuid() if hasattr(os, "getuid") else -1


def stats_dir() -> Path:
    """Return the stats directory from the setting, the environment or the default."""
    configured: object = None
    try:
        from django.conf import settings

        if settings.configured:
            configured = getattr(settings, SETTING, None)
    except ImportError:  # pragma: no cover - Django is a dependency
        pass
    configured = configured or os.environ.get(SETTING)
    if configured:
        return Path(str(configured))
    return Path(tempfile.gettempdir()) / f"django_mysql_pooled-{uid()}"


def private_problem(st: os.stat_result, *, directory: bool) -> str | None:
    """Why the ``lstat()`` result *st* is not this user's private directory
    (mode 0700) or regular file (mode 0600), or ``None``."""
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink"
    if directory and not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if not directory and not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != uid():
        return f"is owned by uid {st.st_uid}, not {uid()}"
    if st.st_mode & 0o077:
        return f"has mode {stat.S_IMODE(st.st_mode):04o}, expected {'0700' if directory else '0600'}"
    return None


def private_dir_problem(directory: Path) -> str | None:
    """Why *directory* is not a private directory of this user, or ``None``."""
    return private_problem(os.lstat(directory), directory=True)


def ensure_private_dir(directory: Path) -> None:
    """Create *directory* with mode 0700 if needed; refuse an existing one that is not private.

    An existing directory is never ``chmod``-ed: its loose mode may be what
    someone chose (a shared directory), and another process may already have
    read or written it. As the reader does, the publisher refuses it.

    :raises PermissionError: it is a symlink, not a directory, another user's,
        or readable or writable by others (the message says how to fix it).
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = private_dir_problem(directory)
    if problem is not None:
        fix = f"; make it private (chmod 700 {str(directory)!r}) or set {SETTING}" if "mode" in problem else ""
        raise PermissionError(f"stats directory {str(directory)!r} {problem}{fix}")


def snapshot_name(alias: str, pid: int) -> str:
    """The file name of the snapshot of *alias* in process *pid*."""
    return f"{pid}-{quote(alias, safe='')}{_SUFFIX}"


def write_snapshot(directory: Path, name: str, data: Mapping[str, Any]) -> Path:
    """Write *data* as JSON to *directory*/*name* atomically (temp file, mode 0600, ``os.replace``)."""
    ensure_private_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX, suffix=_SUFFIX)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, sort_keys=True)
        target = directory / name
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


_live_publishers: weakref.WeakSet[Publisher] = weakref.WeakSet()


class Publisher:
    """A pool hook writing the pool's snapshot; removes it when the pool closes.

    :param alias: the database alias.
    :param server: host, port, database and user (never the password).
    :param options: the pool options (``PoolConfig.as_dict()``).
    """

    def __init__(self, alias: str, server: Mapping[str, Any], options: Mapping[str, Any]) -> None:
        self.alias = alias
        self.server = dict(server)
        self.options = dict(options)
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._last_stats: tuple[dict[str, int], list[dict[str, Any]] | None] | None = None
        self._last_write = 0.0
        self._failed = False
        self._done = False
        _live_publishers.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.alias!r} path={str(self._path)!r}>"

    def __call__(self, pool: Any) -> None:
        if pool.closed or os.getpid() != self.pid:
            self.remove()
            return
        host_stats = getattr(pool, "get_host_stats", None)
        self.publish(pool.get_stats(), hosts=host_rows(host_stats()) if host_stats is not None else None)

    def publish(
        self, stats: dict[str, int], *, hosts: list[dict[str, Any]] | None = None, now: float | None = None
    ) -> bool:
        """Write a snapshot of *stats* (and *hosts*: :func:`host_rows`) unless throttled or
        unchanged; return whether it wrote."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if self._done or now - self._last_write < MIN_INTERVAL:
                return False
            if (stats, hosts or None) == self._last_stats and now - self._last_write < HEARTBEAT:
                return False
            directory = stats_dir()
            try:
                self._write(directory, stats, hosts)
            except OSError as exc:
                if not self._failed:
                    logger.warning("pool %r: cannot publish statistics to %s: %s", self.alias, directory, exc)
                self._failed = True
                return False
            self._last_stats, self._last_write, self._failed = (dict(stats), hosts or None), now, False
            return True

    def _write(self, directory: Path, stats: dict[str, int], hosts: list[dict[str, Any]] | None) -> None:
        data: dict[str, Any] = {
            "pid": self.pid,
            "host": self.host,
            "alias": self.alias,
            "server": self.server,
            "options": self.options,
            "stats": stats,
            "timestamp": time.time(),
        }
        if hosts:  # several servers only: a one-server snapshot is as it always was
            data["hosts"] = hosts
        path = write_snapshot(directory, snapshot_name(self.alias, self.pid), data)
        if self._path is not None and self._path != path:
            unlink(self._path)  # the setting moved
        self._path = path

    def remove(self) -> None:
        """Delete the snapshot (at close or exit) and publish no more."""
        with self._lock:
            self._done = True
            if self._path is not None and os.getpid() == self.pid:
                unlink(self._path)
            self._path = None


def host_rows(host_stats: Mapping[str, Mapping[str, object]]) -> list[dict[str, Any]]:
    """A pool's ``get_host_stats()`` as the snapshot's ``hosts``: a list in the configured order
    (the JSON is written with sorted keys), each ``{"host": "host:port", "state": ..., ...}``;
    empty with one server."""
    return [{"host": label, **values} for label, values in host_stats.items()]


def unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@atexit.register
def _remove_all_at_exit() -> None:
    for publisher in list(_live_publishers):
        publisher.remove()


def publisher_for(alias: str, settings_dict: Mapping[str, Any], config: Any) -> Publisher:
    """Build the publisher hook of a pool from the alias's Django settings (without the password)."""
    server = {
        "host": settings_dict.get("HOST") or "localhost",
        "port": str(settings_dict.get("PORT") or ""),
        "database": settings_dict.get("NAME") or "",
        "user": settings_dict.get("USER") or "",
    }
    return Publisher(alias, server, config.as_dict())
