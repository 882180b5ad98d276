"""Session settings that differ from the pool's ride on the checkout's first statement (cursor.py).

The pool's reset (at checkin) restores Django's settings of the wrapper that
built the pool; a wrapper whose ``OPTIONS`` differ (``connection.copy()`` with
another isolation level) sends the difference in the same packet as its first
statement. Round trips are counted on the client: every statement mysqlclient
sends goes through ``Connection.query``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.db import IntegrityError, ProgrammingError, transaction
from django.db.utils import OperationalError

from tests.conftest import WrapperFactory

LEVEL = "@@SESSION.tx_isolation"


class QueryCounter:
    """Wraps a MySQLdb connection's ``query`` to record what is sent."""

    def __init__(self, conn: Any) -> None:
        self.sent: list[bytes] = []
        original = conn.query

        def query(sql: Any) -> Any:
            self.sent.append(bytes(sql))
            return original(sql)

        conn.query = query


@pytest.fixture
def db(pooled: WrapperFactory) -> Iterator[Any]:
    """A one-connection pool already used once, and a wrapper of it that wants another isolation level."""
    wrapper: Any = pooled({"max_size": 1}, OPTIONS={"isolation_level": "read committed"})
    wrapper.ensure_connection()
    wrapper.close()
    wrapper.settings_dict["OPTIONS"]["isolation_level"] = "serializable"
    yield wrapper


def checkout(db: Any) -> QueryCounter:
    db.ensure_connection()
    assert db.pool.was_reused(db.connection)
    return QueryCounter(db.connection)


def scalar(db: Any, sql: str, params: Any = None) -> Any:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def test_first_query_carries_the_setup_in_one_round_trip(db: Any) -> None:
    counter = checkout(db)
    assert scalar(db, f"SELECT {LEVEL}") == "SERIALIZABLE"
    assert len(counter.sent) == 1
    assert counter.sent[0].startswith(b"SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE; SELECT")
    assert scalar(db, "SELECT 1") == 1
    assert len(counter.sent) == 2 and counter.sent[1] == b"SELECT 1"  # sent once only


def test_prefix_with_parameters_and_percent_signs(db: Any) -> None:
    checkout(db)
    assert scalar(db, "SELECT CONCAT(%s, '%%')", ["50"]) == "50%"
    assert scalar(db, f"SELECT {LEVEL}") == "SERIALIZABLE"


def test_last_executed_query_hides_the_prefix(db: Any) -> None:
    checkout(db)
    with db.cursor() as cursor:
        cursor.execute("SELECT %s", [7])
        assert db.ops.last_executed_query(cursor.cursor, "SELECT %s", [7]) == "SELECT 7"


def test_rowcount_and_lastrowid_are_the_statements_own(db: Any) -> None:
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS prefix_t (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
        cursor.execute("INSERT INTO prefix_t (v) VALUES (1), (2)")
    db.close()
    checkout(db)
    with db.cursor() as cursor:
        cursor.execute("INSERT INTO prefix_t (v) VALUES (3)")
        assert cursor.rowcount == 1
        assert cursor.lastrowid == 3
    db.close()
    checkout(db)
    with db.cursor() as cursor:
        cursor.execute("UPDATE prefix_t SET v = v + 1")
        assert cursor.rowcount == 3
        cursor.execute("DROP TABLE prefix_t")


def test_atomic_first_sends_setup_with_autocommit(db: Any) -> None:
    counter = checkout(db)
    db.set_autocommit(False)  # what atomic() does first on entering its outermost block
    assert scalar(db, f"SELECT {LEVEL}") == "SERIALIZABLE"
    assert scalar(db, "SELECT @@autocommit") == 0
    db.commit()
    db.set_autocommit(True)
    assert counter.sent[0] == b"SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE; SET autocommit = 0"
    assert scalar(db, "SELECT @@autocommit") == 1


@pytest.mark.django_db(transaction=True)
def test_atomic_first_on_the_default_alias() -> None:
    from django.db import connection

    connection.ensure_connection()
    connection.close()
    with transaction.atomic():
        assert scalar(connection, f"SELECT {LEVEL}") == "READ-COMMITTED"
        assert scalar(connection, "SELECT @@autocommit") == 0


def test_executemany_first_flushes_the_setup(db: Any) -> None:
    counter = checkout(db)
    with db.cursor() as cursor:
        cursor.executemany("SELECT %s", [(1,), (2,)])
    assert counter.sent[0] == b"SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    assert scalar(db, f"SELECT {LEVEL}") == "SERIALIZABLE"


def test_callproc_first_flushes_the_setup(db: Any) -> None:
    with db.cursor() as cursor:
        cursor.execute("CREATE PROCEDURE IF NOT EXISTS prefix_level() SELECT @@SESSION.tx_isolation")
    db.close()
    counter = checkout(db)
    try:
        with db.cursor() as cursor:
            cursor.callproc("prefix_level")
            assert cursor.fetchone()[0] == "SERIALIZABLE"
        assert counter.sent[0] == b"SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"
    finally:
        with db.cursor() as cursor:
            cursor.execute("DROP PROCEDURE prefix_level")


def test_error_in_the_statement_keeps_the_setup_and_the_connection(db: Any) -> None:
    checkout(db)
    with pytest.raises(ProgrammingError), db.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table_here")
    assert scalar(db, f"SELECT {LEVEL}") == "SERIALIZABLE"
    db.close()
    assert db.pool.get_stats()["closes_broken"] == 0


def test_integrity_error_mapping_survives_the_prefix(db: Any) -> None:
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS prefix_nn (v INT NOT NULL)")
    db.close()
    checkout(db)
    try:
        with pytest.raises(IntegrityError), db.cursor() as cursor:
            cursor.execute("INSERT INTO prefix_nn (v) VALUES (NULL)")
    finally:
        with db.cursor() as cursor:
            cursor.execute("DROP TABLE prefix_nn")


def test_error_in_the_prefix_breaks_the_connection(db: Any) -> None:
    checkout(db)
    connection_id = db.connection.thread_id()
    db._pending_setup = ["SET SESSION no_such_variable = 1", *(db._pending_setup or [])]
    with pytest.raises(OperationalError):
        scalar(db, "SELECT 1")
    db.close()
    assert db.pool.get_stats()["closes_broken"] == 1
    assert scalar(db, "SELECT CONNECTION_ID()") != connection_id


def test_no_round_trip_before_the_first_query_when_nothing_differs(pooled: WrapperFactory) -> None:
    wrapper: Any = pooled({"max_size": 1}, OPTIONS={"isolation_level": "repeatable read"})
    assert scalar(wrapper, "SELECT @@SESSION.tx_isolation") == "REPEATABLE-READ"
    wrapper.close()
    counter = checkout(wrapper)
    assert scalar(wrapper, "SELECT @@SESSION.tx_isolation") == "REPEATABLE-READ"
    assert counter.sent == [b"SELECT @@SESSION.tx_isolation"]
    assert wrapper.pool.get_stats()["checks_fast"] == 1
