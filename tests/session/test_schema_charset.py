"""The schema's default character set after a reset, against a new connection.

``COM_RESET_CONNECTION`` keeps the default schema but sets
``character_set_database`` and ``collation_database`` to the server's
defaults; a new connection to a schema created with another character set has
the schema's (MariaDB 10.11). So the restore must select the schema again
every time, even when client and server agree on which schema is current: a
restore that left ``USE`` out when they agreed (an optimization tried and
reverted) failed this test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

SCHEMA = "dmp_latin1_schema"
QUERY = "SELECT DATABASE(), @@character_set_database, @@collation_database"


@pytest.fixture
def latin1_schema(admin: Any) -> Iterator[str]:
    cursor = admin.cursor()
    cursor.execute(f"DROP DATABASE IF EXISTS `{SCHEMA}`")
    cursor.execute(f"CREATE DATABASE `{SCHEMA}` CHARACTER SET latin1")
    try:
        yield SCHEMA
    finally:
        cursor.execute(f"DROP DATABASE IF EXISTS `{SCHEMA}`")


def _seen(db: Any) -> tuple[Any, ...]:
    with db.cursor() as cursor:
        cursor.execute(QUERY)
        row = tuple(cursor.fetchone())
    db.close()
    return row


@pytest.mark.parametrize("reset", [True, "checkout"])
def test_a_reused_session_has_the_schemas_character_set(
    pooled: Any, stock: Any, latin1_schema: str, reset: Any
) -> None:
    expected = _seen(stock(NAME=latin1_schema, CONN_MAX_AGE=0))  # a new connection
    assert expected[1] == "latin1"  # (the server's default is not latin1 here, or the test proves nothing)
    db = pooled({"max_size": 1, "reset": reset}, NAME=latin1_schema)
    assert [_seen(db) for _ in range(3)] == [expected] * 3
    assert db.pool.get_stats()["connections_num"] == 1  # the same server connection, reset twice
