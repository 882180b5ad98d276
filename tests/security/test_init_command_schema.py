"""Security review H-1: ``init_command`` never runs in a schema a checkout chose.

The restore batch leaves out ``USE`` when the client library's view of the
schema is already the pool's. A checkout can make the server's schema differ
behind the client's back (``SET session_track_schema = OFF`` then ``USE``).
Had ``init_command`` then run first in that schema, a routine it names would
resolve to the checkout's own, and what that routine left (a user variable, a
temporary table shadowing one of the pool's) would survive into the next
checkout: the reset is over by then. Oracle: a new connection, which runs
``init_command`` in the pool's schema only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import ProgrammingError, connections

EVIL = "dmp_sec_h1_evil"


@pytest.fixture
def routines(admin: Any) -> Iterator[str]:
    """``f()`` in the pool's schema (harmless) and in another one (leaves state behind); the pool's schema."""
    database = str(connections["default"].settings_dict["NAME"])
    cursor = admin.cursor()
    cursor.execute(f"DROP DATABASE IF EXISTS `{EVIL}`")
    cursor.execute(f"CREATE DATABASE `{EVIL}`")
    cursor.execute(f"DROP FUNCTION IF EXISTS `{database}`.f")
    cursor.execute(f"CREATE FUNCTION `{database}`.f() RETURNS INT DETERMINISTIC RETURN 1")
    cursor.execute(
        f"CREATE FUNCTION `{EVIL}`.f() RETURNS INT NOT DETERMINISTIC MODIFIES SQL DATA BEGIN "
        f"SET @planted = 'from the checkout'; "
        f"CREATE TEMPORARY TABLE IF NOT EXISTS `{database}`.dmp_shadow (secret VARCHAR(20)); "
        f"RETURN 1; END"
    )
    try:
        yield database
    finally:
        cursor.execute(f"DROP DATABASE IF EXISTS `{EVIL}`")
        cursor.execute(f"DROP FUNCTION IF EXISTS `{database}`.f")


@pytest.mark.parametrize("reset", [True, "checkout"])
def test_init_command_runs_in_the_pools_schema_only(pooled: Any, routines: str, reset: Any) -> None:
    db = pooled({"max_size": 1, "reset": reset}, OPTIONS={"init_command": "SET @dmp_init = f()"})
    with db.cursor() as cursor:  # the checkout: the server's schema changes, the client's view does not
        cursor.execute("SET session_track_schema = OFF")
        cursor.execute(f"USE `{EVIL}`")
    db.close()
    with db.cursor() as cursor:
        cursor.execute("SELECT DATABASE(), @dmp_init, @planted")
        seen = cursor.fetchone()
        with pytest.raises(ProgrammingError, match="dmp_shadow"):  # 1146: no such table
            cursor.execute("SELECT * FROM dmp_shadow")
    db.close()  # (reset while f() still exists)
    assert seen == (routines, 1, None)
    assert db.pool.get_stats()["connections_num"] == 1  # the same server connection, reset
