"""Fork safety: a child never uses, nor ends, the sessions it inherited."""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Any

import MySQLdb
import pytest

from django_mysql_pooled.pool import registry
from django_mysql_pooled.session.native import detach_after_fork
from tests.cancel.helpers import run_in_child
from tests.conftest import WrapperFactory
from tests.server import admin_connect

pytestmark = pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")


def connection_id(wrapper: Any) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


def test_child_starts_empty_and_parent_session_survives(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 2})
    parent_id = connection_id(db)
    held = connection_id(db)  # still checked out by this thread's wrapper
    assert held == parent_id
    pool = db.pool  # type: ignore[attr-defined]
    inherited = db.connection
    inherited_ref = [inherited]

    def child() -> bool:
        if registry.get_pool(db.alias) is not None or db.connection is not None:
            return False
        child_id = connection_id(db)  # a new pool, a new server connection
        db.close()
        db.close_pool()  # type: ignore[attr-defined]
        with contextlib.suppress(MySQLdb.Error):
            inherited.close()  # already detached: nothing reaches the parent's socket
        del inherited_ref[:]
        gc.collect()
        return child_id != parent_id and pool.closed

    assert run_in_child(child) == 0
    assert connection_id(db) == parent_id  # the parent's session is intact
    db.close()
    assert connection_id(db) == parent_id  # and it is still reusable from the pool


def test_without_detach_a_child_ends_the_parent_session(admin: Any, pooled: WrapperFactory) -> None:
    """The control: a plain close() in a child sends COM_QUIT on the shared socket."""
    plain: Any = admin_connect(pooled().settings_dict)
    plain_id = plain.thread_id()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            plain.close()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(MySQLdb.OperationalError):
        cursor = plain.cursor()
        cursor.execute("SELECT 1")
    plain.close()
    cursor = admin.cursor()
    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (plain_id,))
    assert cursor.fetchone()[0] == 0


def test_detach_after_fork_keeps_the_parent_connection(pooled: WrapperFactory) -> None:
    plain: Any = admin_connect(pooled().settings_dict)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            detach_after_fork(plain)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    plain.ping()
    cursor = plain.cursor()
    cursor.execute("SELECT 1")
    assert cursor.fetchone() == (1,)
    plain.close()
