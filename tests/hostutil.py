"""Helpers of the multi-host tests on real servers (tests/session, tests/faults, tests/clusters)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["scalar", "state", "wait_for"]


def scalar(db: Any, sql: str) -> Any:
    """The first column of the first row *sql* returns through the Django wrapper *db*."""
    with db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def state(db: Any, label: str) -> dict[str, Any]:
    """``get_host_stats()`` of *db*'s pool for the host ``label`` (``"host:port"``)."""
    stats: dict[str, dict[str, Any]] = db.pool.get_host_stats()
    return stats[label]


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    """Poll *predicate* every 10 ms until it holds; fail naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)
