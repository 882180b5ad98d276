"""The reset ladder's lower rungs and the pool without reset, on the real server."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WrapperFactory


def query(db: Any, sql: str) -> Any:
    with db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


@pytest.mark.parametrize("reset", [True, "checkout"])
def test_change_user_rung_resets_the_session(pooled: WrapperFactory, reset: object) -> None:
    db: Any = pooled({"max_size": 1, "reset": reset})
    first = query(db, "SELECT CONNECTION_ID()")
    query(db, "SET @leak = 1")
    db.pool.restorer.use_reset_connection = False  # as after a 1047 from a proxy
    db.close()
    assert query(db, "SELECT CONNECTION_ID(), @leak, DATABASE(), @@SESSION.tx_isolation") == (
        first[0],
        None,
        db.settings_dict["NAME"],
        "READ-COMMITTED",
    )
    db.close()
    stats = db.pool.get_stats()
    resets = 2 if reset is True else 1  # at each of the two checkins, or at the one reused checkout
    assert (stats["resets_change_user"], stats["resets_reset_connection"]) == (resets, 0)


def test_reconnect_rung_after_change_user_fails(pooled: WrapperFactory, admin: Any) -> None:
    db: Any = pooled({"max_size": 1, "reset": "checkout"})
    first = query(db, "SELECT CONNECTION_ID()")[0]
    db.close()
    db.pool.restorer.use_reset_connection = False
    admin.cursor().execute(f"KILL CONNECTION {first}")
    second = query(db, "SELECT CONNECTION_ID()")[0]
    db.close()
    assert second != first
    stats = db.pool.get_stats()
    assert (stats["resets_failed"], stats["resets_reconnect"]) == (1, 1)


def test_failed_reset_at_checkin_closes_the_connection(pooled: WrapperFactory, admin: Any) -> None:
    db: Any = pooled({"max_size": 1})
    first = query(db, "SELECT CONNECTION_ID()")[0]
    db.pool.restorer.use_reset_connection = False
    admin.cursor().execute(f"KILL CONNECTION {first}")
    db.close()  # change_user fails: the connection is closed, never pooled
    stats = db.pool.get_stats()
    assert (stats["resets_failed"], stats["closes_broken"], stats["pool_size"]) == (1, 1, 0)
    assert query(db, "SELECT CONNECTION_ID()")[0] != first


def test_reset_false_only_pings_and_leaks(pooled: WrapperFactory) -> None:
    db: Any = pooled({"max_size": 1, "reset": False})
    query(db, "SET @kept = 1")
    db.close()
    assert query(db, "SELECT @kept, @@SESSION.tx_isolation") == (1, "READ-COMMITTED")
    db.close()
    assert db.pool.get_stats()["resets_ping"] == 1


def test_connect_error_reaches_the_caller_and_frees_the_slot(pooled: WrapperFactory) -> None:
    from django.db.utils import OperationalError

    db: Any = pooled({"max_size": 1, "timeout": 2}, NAME="dmp_no_such_database")
    with pytest.raises(OperationalError, match="Unknown database 'dmp_no_such_database'") as excinfo:
        db.ensure_connection()
    assert f"(database {db.alias!r} at " in str(excinfo.value)
    assert excinfo.value.__cause__ is not None and excinfo.value.__cause__.args[0] == 1049
    stats = db.pool.get_stats()
    assert (stats["pool_size"], stats["connections_errors"], stats["requests_errors"]) == (0, 1, 1)
