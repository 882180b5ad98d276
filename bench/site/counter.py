"""Count new server connections on the client side, across processes.

``MySQLdb.connect`` is wrapped so that every call appends one byte to the file
named by ``DMP_BENCH_CONNECTS_FILE`` (``O_APPEND`` writes are atomic, so the
gunicorn workers of one mode can share a file): its size is the number of
connections opened. Every mode opens connections through ``MySQLdb.connect``
(Django's stock backend, django-db-connection-pool through it, and this
backend's pool). Unlike the server's ``Connections`` counter this does not
count other clients of the server.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import MySQLdb

_installed = False


def install() -> None:
    global _installed
    path = os.environ.get("DMP_BENCH_CONNECTS_FILE")
    if _installed or not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    original = MySQLdb.connect

    @functools.wraps(original)
    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = original(*args, **kwargs)
        os.write(fd, b"c")
        return conn

    MySQLdb.connect = connect
    _installed = True


def read(path: str) -> int:
    """Connections counted in *path* so far."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0
