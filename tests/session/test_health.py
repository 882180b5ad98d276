"""Health: a connection the server dropped is never handed out, and none goes idle inside a transaction.

The reset runs at checkin and the checkout validates (a zero-round-trip
socket check, or a ping after the validation window): a pooled connection
that the server killed or timed out must be replaced without the caller
seeing an error. A connection returned inside a transaction must be rolled back at
checkin, so that it holds no row locks while it waits idle in the pool.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from tests.conftest import WrapperFactory

LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT


def execute(db: Any, sql: str) -> None:
    with db.cursor() as cursor:
        cursor.execute(sql)


def scalar(db: Any, sql: str) -> Any:
    with db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def connection_id(db: Any) -> int:
    return int(scalar(db, "SELECT CONNECTION_ID()"))


def alive(admin: Any, conn_id: int) -> bool:
    return bool(scalar(admin, f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = {conn_id}"))


def wait_until_gone(admin: Any, conn_id: int, timeout: float = 10.0) -> None:
    """Wait until the server has really dropped *conn_id* (its PROCESSLIST row is gone)."""
    deadline = time.monotonic() + timeout
    while alive(admin, conn_id):
        if time.monotonic() > deadline:
            pytest.fail(f"the server did not drop connection {conn_id} within {timeout} s")
        time.sleep(0.1)


def admin_error(admin: Any, sql: str) -> int | None:
    cursor = admin.cursor()
    try:
        cursor.execute(sql)
    except Exception as exc:
        return int(exc.args[0])
    finally:
        cursor.close()
    return None


def assert_replaced(db: Any, victim: int) -> None:
    """The next checkout works, on a new connection, and the pool counted the loss.

    The checkout's validation finds it (the reset ran at checkin, when it was alive).
    """
    replacement = connection_id(db)  # no error reaches the caller
    assert replacement != victim
    stats = db.pool.get_stats()
    assert (stats["checks_failed"], stats["connections_lost"], stats["closes_broken"]) == (1, 1, 1)
    assert stats["resets_failed"] == 0
    assert (stats["connections_num"], stats["requests_num"], stats["requests_errors"]) == (2, 2, 0)


def test_killed_connection_is_replaced(pooled: WrapperFactory, admin: Any) -> None:
    db: Any = pooled({"max_size": 1})
    victim = connection_id(db)
    db.close()
    admin.cursor().execute(f"KILL CONNECTION {victim}")
    wait_until_gone(admin, victim)
    assert_replaced(db, victim)


def test_connection_dropped_by_wait_timeout_is_replaced(pooled: WrapperFactory, admin: Any) -> None:
    # init_command sets wait_timeout = 1 again after every reset: the idle
    # session is dropped by the server about a second after its checkin.
    db: Any = pooled({"max_size": 1}, OPTIONS={"init_command": "SET SESSION wait_timeout = 1"})
    assert scalar(db, "SELECT @@SESSION.wait_timeout") == 1
    victim = connection_id(db)
    db.close()
    assert alive(admin, victim)
    wait_until_gone(admin, victim)  # about one second
    assert_replaced(db, victim)


@pytest.mark.parametrize(("reset", "dropped"), [(True, False), ("checkout", True)])
def test_wait_timeout_set_by_a_checkout_ends_at_its_checkin(
    pooled: WrapperFactory, admin: Any, reset: object, dropped: bool
) -> None:
    # Reset at checkin: the session's wait_timeout is the global one again while
    # idle. Reset at checkout: the idle session keeps wait_timeout=1 and is dropped.
    db: Any = pooled({"max_size": 1, "reset": reset})
    execute(db, "SET SESSION wait_timeout = 1")
    victim = connection_id(db)
    db.close()
    time.sleep(2.5)
    assert alive(admin, victim) is not dropped
    assert (connection_id(db) == victim) is not dropped


@pytest.fixture
def account(admin: Any) -> Iterator[str]:
    """A one-row table in the test database; *admin* waits at most 1 s for a row lock."""
    admin.select_db(str(connections["default"].settings_dict["NAME"]))
    cursor = admin.cursor()
    for sql in (
        "SET SESSION innodb_lock_wait_timeout = 1",
        "DROP TABLE IF EXISTS dmp_health",
        "CREATE TABLE dmp_health (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
        "INSERT INTO dmp_health VALUES (1, 10)",
    ):
        cursor.execute(sql)
    yield "dmp_health"
    cursor.execute("DROP TABLE IF EXISTS dmp_health")


@pytest.mark.parametrize("how", ["start_transaction", "autocommit_off"])
def test_transaction_left_open_is_rolled_back_at_checkin(
    account: str, pooled: WrapperFactory, admin: Any, how: str
) -> None:
    db: Any = pooled({"max_size": 1})
    try:
        victim = connection_id(db)
        if how == "start_transaction":
            execute(db, "START TRANSACTION")  # behind Django's back
        else:
            db.set_autocommit(False)
        execute(db, f"UPDATE {account} SET v = v + 1 WHERE id = 1")
        update = f"UPDATE {account} SET v = v WHERE id = 1"
        assert admin_error(admin, update) == LOCK_WAIT_TIMEOUT, "the row should be locked now"
        db.close()
        # Before any new checkout: the lock is gone and the change undone.
        assert admin_error(admin, update) is None
        assert scalar(admin, f"SELECT v FROM {account} WHERE id = 1") == 10
        stats = db.pool.get_stats()
        assert (stats["returns_rolled_back"], stats["pool_available"], stats["closes_broken"]) == (1, 1, 0)
        assert connection_id(db) == victim, "a rolled-back connection is kept"
    finally:
        db.close()
