"""Nothing a checkout does to its session reaches the next checkout.

Each case of the matrix sets one kind of session state, checks that it is
there, hands the connection back and checks again. The pooled backend
(``max_size=1``, so the very same server connection, reset) must have cleared
it; the stock backend with ``CONN_MAX_AGE=None`` runs the same cases and must
still show it, which proves that every check can fail. Roles are tested on a
private server (``tests/faults/test_server_globals.py`` and the fuzzing in
``tests/faults/test_equivalence_fuzz.py``): tests never create users or roles
on the shared one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.backends.signals import connection_created

from tests.conftest import WrapperFactory

LOCK_WAIT_TIMEOUT = 1205  # ER_LOCK_WAIT_TIMEOUT (row locks and metadata locks)
NOT_LOCKED = 1100  # ER_TABLE_NOT_LOCKED: LOCK TABLES is in effect
NO_SUCH_TABLE = 1146  # ER_NO_SUCH_TABLE
UNKNOWN_STATEMENT = 1243  # ER_UNKNOWN_STMT_HANDLER


def query(db: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def scalar(db: Any, sql: str) -> Any:
    return query(db, sql)[0][0]


def error_code(db: Any, sql: str) -> int | None:
    """Run *sql* on *db* (a wrapper or a MySQLdb connection); return its error code."""
    try:
        with db.cursor() as cursor:
            cursor.execute(sql)
            cursor.fetchall()
    except Exception as exc:  # Django's and MySQLdb's errors alike carry the code
        return int(exc.args[0])
    return None


def connection_id(db: Any) -> int:
    return int(scalar(db, "SELECT CONNECTION_ID()"))


def isolation(db: Any) -> str:
    return str(scalar(db, "SELECT @@SESSION.tx_isolation" if db.mysql_is_mariadb else "SELECT @@transaction_isolation"))


@dataclasses.dataclass(frozen=True)
class Env:
    db: Any
    admin: Any  # plain MySQLdb connection in the test database, lock waits of 1 s


@dataclasses.dataclass(frozen=True)
class Case:
    setup: Callable[[Env], object]
    state: Callable[[Env], list[bool]]  # one item per aspect: "still there?"
    stock_leaks: bool = True


def run(*statements: str) -> Callable[[Env], object]:
    return lambda env: [query(env.db, sql) for sql in statements]


def equals(sql: str, value: object) -> Callable[[Env], list[bool]]:
    return lambda env: [scalar(env.db, sql) == value]


CASES = {
    "user_variable": Case(run("SET @dmp_var = 42"), equals("SELECT @dmp_var", 42)),
    "sql_mode": Case(run("SET SESSION sql_mode = 'ANSI_QUOTES'"), equals("SELECT @@SESSION.sql_mode", "ANSI_QUOTES")),
    "time_zone": Case(run("SET time_zone = '+05:00'"), equals("SELECT @@SESSION.time_zone", "+05:00")),
    "foreign_key_checks": Case(run("SET foreign_key_checks = 0"), equals("SELECT @@foreign_key_checks", 0)),
    "isolation_level": Case(
        run("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
        lambda env: [isolation(env.db) == "SERIALIZABLE"],
    ),
    "charset": Case(
        run("SET NAMES latin1"),
        lambda env: [
            scalar(env.db, "SELECT @@character_set_client") == "latin1",
            env.db.connection.character_set_name() == "latin1",  # what the client escapes with
        ],
    ),
    "autocommit_sql": Case(run("SET autocommit = 0"), equals("SELECT @@autocommit", 0)),
    # Through Django's API the stock backend notices: close_if_unusable_or_obsolete()
    # drops a connection whose autocommit differs from the settings, so nothing leaks.
    "autocommit_django": Case(
        lambda env: env.db.set_autocommit(False), equals("SELECT @@autocommit", 0), stock_leaks=False
    ),
    "transaction": Case(
        run(
            "START TRANSACTION",
            "INSERT INTO dmp_iso_real VALUES (2, 20)",
            "SELECT v FROM dmp_iso_real WHERE id = 1 FOR UPDATE",
        ),
        lambda env: [
            scalar(env.db, "SELECT COUNT(*) FROM dmp_iso_real") == 2,
            error_code(env.admin, "UPDATE dmp_iso_real SET v = v WHERE id = 1") == LOCK_WAIT_TIMEOUT,
        ],
    ),
    "temporary_table": Case(
        run("CREATE TEMPORARY TABLE dmp_iso_tmp (id INT)"),
        lambda env: [error_code(env.db, "SELECT COUNT(*) FROM dmp_iso_tmp") != NO_SUCH_TABLE],
    ),
    "temporary_table_shadowing": Case(
        run("CREATE TEMPORARY TABLE dmp_iso_real (id INT PRIMARY KEY, v INT)"),
        equals("SELECT COUNT(*) FROM dmp_iso_real", 0),  # the real table has one row
    ),
    "get_lock": Case(
        run("SELECT GET_LOCK('dmp_iso_lock', 0)"),
        lambda env: [scalar(env.admin, "SELECT IS_FREE_LOCK('dmp_iso_lock')") == 0],
    ),
    "lock_tables": Case(
        run("LOCK TABLES dmp_iso_real WRITE"),
        lambda env: [
            error_code(env.db, "SELECT COUNT(*) FROM dmp_iso_other") == NOT_LOCKED,
            error_code(env.admin, "SELECT COUNT(*) FROM dmp_iso_real") == LOCK_WAIT_TIMEOUT,
        ],
    ),
    "prepared_statement": Case(
        run("PREPARE dmp_iso_stmt FROM 'SELECT 1'"),
        lambda env: [error_code(env.db, "EXECUTE dmp_iso_stmt") != UNKNOWN_STATEMENT],
    ),
    "use_other_db": Case(run("USE dmp_other"), equals("SELECT DATABASE()", "dmp_other")),
    "last_insert_id": Case(run("SELECT LAST_INSERT_ID(424242)"), equals("SELECT LAST_INSERT_ID()", 424242)),
}


@pytest.fixture
def tables(admin: Any) -> Iterator[str]:
    """Real tables in the test database and a second database; yields the test database's name."""
    name = str(connections["default"].settings_dict["NAME"])
    admin.select_db(name)
    cursor = admin.cursor()
    for sql in (
        "SET SESSION innodb_lock_wait_timeout = 1, lock_wait_timeout = 1",
        "DROP TABLE IF EXISTS dmp_iso_real, dmp_iso_other",
        "CREATE TABLE dmp_iso_real (id INT PRIMARY KEY, v INT) ENGINE=InnoDB",
        "CREATE TABLE dmp_iso_other (id INT) ENGINE=InnoDB",
        "INSERT INTO dmp_iso_real VALUES (1, 10)",
        "CREATE DATABASE IF NOT EXISTS dmp_other",
    ):
        cursor.execute(sql)
    yield name
    for sql in ("DROP TABLE IF EXISTS dmp_iso_real, dmp_iso_other", "DROP DATABASE IF EXISTS dmp_other"):
        cursor.execute(sql)


def set_and_hand_out_again(env: Env, case: Case, hand_back: Callable[[], object]) -> tuple[int, int]:
    """Set the case's state, hand the connection back; return the connection ids before and after."""
    before = connection_id(env.db)
    case.setup(env)
    assert all(case.state(env)), "the state was not set, so its check proves nothing"
    hand_back()
    return before, connection_id(env.db)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_pooled_checkout_clears_state(tables: str, case: Case, admin: Any, pooled: WrapperFactory) -> None:
    db: Any = pooled({"max_size": 1})
    env = Env(db, admin)
    try:
        before, after = set_and_hand_out_again(env, case, db.close)
        assert after == before, "max_size=1 must hand out the same server connection"
        state = case.state(env)
        assert not any(state), f"state left over after the reset: {state}"
    finally:
        db.close()


@pytest.mark.stock
@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_stock_persistent_connection_leaks_state(tables: str, case: Case, admin: Any, stock: WrapperFactory) -> None:
    db: Any = stock()
    env = Env(db, admin)
    try:
        # What Django does at the end of each request (request_finished).
        before, after = set_and_hand_out_again(env, case, db.close_if_unusable_or_obsolete)
        if case.stock_leaks:
            assert after == before
            assert all(case.state(env)), "the stock backend should leak this state"
        else:
            assert after != before, "Django should have dropped the connection"
            assert not any(case.state(env))
    finally:
        db.close()


# -- after a reset, the connection is set up as if it were new ------------------


def test_init_command_runs_on_every_checkout(pooled: WrapperFactory) -> None:
    db: Any = pooled(
        {"max_size": 1}, OPTIONS={"init_command": "SET @@session.sql_mode = 'STRICT_TRANS_TABLES', @dmp_init = 1"}
    )
    first = connection_id(db)
    for _ in range(3):
        assert connection_id(db) == first
        assert query(db, "SELECT @@SESSION.sql_mode, @dmp_init") == [("STRICT_TRANS_TABLES", 1)]
        query(db, "SET SESSION sql_mode = 'ANSI', @dmp_init = 2")
        db.close()


@pytest.mark.parametrize("level", [None, "read committed", "repeatable read", "serializable", "read uncommitted"])
def test_isolation_level_option_holds_on_every_checkout(pooled: WrapperFactory, level: str | None) -> None:
    db: Any = pooled({"max_size": 1}, OPTIONS={} if level is None else {"isolation_level": level})
    expected = (level or "read committed").upper().replace(" ", "-")  # None: Django's default
    other = "SERIALIZABLE" if expected != "SERIALIZABLE" else "READ UNCOMMITTED"
    first = connection_id(db)
    for _ in range(3):
        assert connection_id(db) == first
        assert isolation(db) == expected
        query(db, f"SET SESSION TRANSACTION ISOLATION LEVEL {other}")
        db.close()


# Valid UTF-8 whose bytes a GBK/Big5 escaper pairs up so that the backslash
# is not escaped: sent with a stale client charset, the quote ends the literal.
TRICKY = "\u4e2d\\' OR 1=1 -- "


def snapshot(db: Any) -> tuple[Any, ...]:
    """What a new connection looks like: server session, client side, Django's view."""
    server = query(
        db,
        "SELECT @@character_set_client, @@character_set_connection, @@character_set_results, "
        "@@collation_connection, @@SESSION.sql_mode, @@autocommit, @@SESSION.time_zone, DATABASE(), "
        "@@SESSION.wait_timeout, @@foreign_key_checks",
    )[0]
    conn = db.connection
    client = (conn.character_set_name(), conn.encoding, conn.get_autocommit(), db.get_autocommit())
    return (*server, isolation(db), *client)


def dirty(db: Any) -> None:
    db.connection.set_character_set("big5")  # changes mysqlclient's encoding too
    for sql in (
        "SET NAMES gbk",  # the client library follows (session tracking)
        "SET SESSION sql_mode = 'ANSI_QUOTES'",
        "SET autocommit = 0",
        "SET time_zone = '+03:00', wait_timeout = 77, foreign_key_checks = 0",
        "SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "USE dmp_other",
    ):
        query(db, sql)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"isolation_level": "repeatable read"},
        {"init_command": "SET @@session.sql_mode = 'STRICT_TRANS_TABLES', @x_init = 1"},
        {"init_command": "SET autocommit = 0"},  # Django turns autocommit on after it
        {"init_command": "SET NAMES latin1"},  # mysqlclient's SET NAMES runs after it
        {"collation": "utf8mb4_unicode_ci"},  # mysqlclient: SET NAMES ... COLLATE
        {"sql_mode": "TRADITIONAL"},  # mysqlclient: SET sql_mode after connecting
    ],
    ids=["defaults", "global_isolation", "init_command", "init_autocommit", "init_names", "collation", "sql_mode"],
)
def test_reset_connection_looks_new(tables: str, pooled: WrapperFactory, options: dict[str, str]) -> None:
    db: Any = pooled({"max_size": 1}, OPTIONS=options)
    new = snapshot(db)
    assert new[:3] == ("utf8mb4",) * 3
    first = connection_id(db)
    dirty(db)
    assert snapshot(db) != new
    db.close()
    assert connection_id(db) == first
    assert query(db, "SELECT %s", [TRICKY]) == [(TRICKY,)], "client and server disagree on the charset"
    assert snapshot(db) == new


def test_connection_created_sent_on_every_checkout(pooled: WrapperFactory) -> None:
    db: Any = pooled({"max_size": 1})
    seen: list[int] = []

    def receiver(sender: object, connection: Any, **kwargs: object) -> None:
        if connection is db:
            seen.append(connection.connection.thread_id())

    connection_created.connect(receiver)
    try:
        for _ in range(3):
            db.ensure_connection()
            db.close()
    finally:
        connection_created.disconnect(receiver)
    assert len(seen) == 3
    assert len(set(seen)) == 1, "the same server connection every time"
