"""A reused session is indistinguishable from a fresh one: the fingerprint oracle.

Each action dirties a pooled session (``max_size=1``: the same server
connection next time). After ``close()`` and a new checkout, the session's
fingerprint (:mod:`tests.session.fingerprint`: every session variable, schema, role,
locks, temporary tables, transaction, and what the client library believes)
must equal that of a stock connection opened afresh with the same settings.
The stock backend with a persistent connection runs the same actions and
must differ, which proves that each check can fail.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from tests.conftest import WrapperFactory
from tests.session.fingerprint import Probes, diff, explain, fingerprint, fresh_fingerprint

#: Where the reset runs: at checkin (the default) or at checkout.
PLACEMENTS: dict[str, dict[str, object]] = {
    "checkin": {"max_size": 1},
    "checkout": {"max_size": 1, "reset": "checkout"},
}
#: The parameter of the SQL-injection regression: harmless only if client and server agree on escaping.
INJECTION = "nobody\\' OR 1=1 -- "


@dataclasses.dataclass(frozen=True)
class Env:
    """The objects the actions use, named for this run (lock names are server-wide)."""

    database: str
    other: str
    lock: str
    probes: Probes


def query(db: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def connection_id(db: Any) -> int:
    """The server connection's id, from the handshake (``CONNECTION_ID()`` follows ``pseudo_thread_id``)."""
    db.ensure_connection()
    return int(db.connection.thread_id())


Action = Callable[[Any, Env], object]


def run(*statements: str) -> Action:
    """An action running *statements* (``{other}`` and ``{lock}`` filled in) through Django."""

    def action(db: Any, env: Env) -> None:
        for sql in statements:
            query(db, sql.format(other=env.other, lock=env.lock))

    return action


def set_character_set(name: str) -> Action:
    return lambda db, env: db.connection.set_character_set(name)


def django_autocommit_off(db: Any, env: Env) -> None:
    db.set_autocommit(False)
    query(db, "INSERT INTO dmp_eq_real VALUES (4, 'by django')")


ACTIONS: dict[str, Action] = {
    "nothing": run(),
    "sql_mode_no_backslash_escapes": run("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"),
    "sql_mode_ansi_quotes": run("SET SESSION sql_mode = 'ANSI_QUOTES'"),
    "sql_mode_ansi": run("SET SESSION sql_mode = 'ANSI'"),
    "sql_mode_empty": run("SET SESSION sql_mode = ''"),
    "many_variables": run(
        "SET SESSION group_concat_max_len = 7, foreign_key_checks = 0, unique_checks = 0, wait_timeout = 77, "
        "net_write_timeout = 77, div_precision_increment = 9, sql_select_limit = 1000, lc_time_names = 'de_DE', "
        "default_week_format = 3, lock_wait_timeout = 5, innodb_lock_wait_timeout = 3, sql_safe_updates = 1, "
        "optimizer_switch = 'index_merge=off', default_storage_engine = MyISAM, long_query_time = 3, "
        "lc_messages = 'de_DE', character_set_server = latin1, sql_log_bin = 0"
    ),
    "set_names_gbk": run("SET NAMES gbk"),
    "set_names_latin1": run("SET NAMES latin1"),
    "set_character_set_big5": set_character_set("big5"),
    "set_character_set_gbk": set_character_set("gbk"),
    "character_set_results": run("SET character_set_results = latin1"),
    "collation_connection": run("SET collation_connection = utf8mb4_bin"),
    "autocommit_off": run("SET autocommit = 0"),
    "django_autocommit_off": django_autocommit_off,
    "transaction_with_write": run("START TRANSACTION", "INSERT INTO dmp_eq_real VALUES (3, 'uncommitted')"),
    "implicit_transaction_with_write": run("SET autocommit = 0", "INSERT INTO dmp_eq_real VALUES (3, 'implicit')"),
    "read_only_transaction": run("START TRANSACTION READ ONLY", "SELECT * FROM dmp_eq_real"),
    "isolation_level": run("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
    "session_read_only": run("SET SESSION TRANSACTION READ ONLY"),
    "use_other_db": run("USE `{other}`"),
    "schema_untracked_then_use": run("SET session_track_schema = OFF", "USE `{other}`"),
    "session_tracking": run(
        "SET session_track_system_variables = '', session_track_state_change = ON, "
        "session_track_transaction_info = CHARACTERISTICS"
    ),
    "user_variables": run("SET @dmp_eq_a = 1, @dmp_eq_b = 'x', @dmp_eq_c = NULL"),
    "temporary_table": run("CREATE TEMPORARY TABLE dmp_eq_tmp (id INT)"),
    "temporary_table_shadowing": run("CREATE TEMPORARY TABLE dmp_eq_real (id INT)"),
    "get_lock": run("SELECT GET_LOCK('{lock}', 0)"),
    "lock_tables": run("LOCK TABLES dmp_eq_real WRITE"),
    "prepared_statement": run("PREPARE dmp_eq_s0 FROM 'SELECT 1'"),
    "handler_open": run("HANDLER dmp_eq_real OPEN AS dmp_eq_h0"),
    "sql_auto_is_null": run("SET SQL_AUTO_IS_NULL = 1"),
    "time_zone": run("SET time_zone = '+05:00'"),
    "max_statement_time": run("SET max_statement_time = 30"),
    "last_insert_id": run("SELECT LAST_INSERT_ID(4242)"),
    "insert_id": run("SET insert_id = 77"),
    "timestamp": run("SET timestamp = 1000000000"),
    "pseudo_thread_id": run("SET pseudo_thread_id = 7"),
}
#: What Django's own request-end check catches with a persistent connection (it reconnects).
STOCK_RECONNECTS = {"django_autocommit_off"}


@pytest.fixture
def env(admin: Any) -> Iterator[Env]:
    """Tables in the test database and a second database (both dropped at the end)."""
    database = str(connections["default"].settings_dict["NAME"])
    other = f"{database}_other"
    cursor = admin.cursor()
    cursor.execute(f"USE `{database}`")
    for sql in (
        "DROP TABLE IF EXISTS dmp_eq_real, dmp_eq_unlocked",
        "CREATE TABLE dmp_eq_real (id INT PRIMARY KEY, v VARCHAR(50)) ENGINE=InnoDB",
        "CREATE TABLE dmp_eq_unlocked (id INT) ENGINE=InnoDB",
        "INSERT INTO dmp_eq_real VALUES (1, 'secret-1'), (2, 'secret-2')",
        f"CREATE DATABASE IF NOT EXISTS `{other}`",
    ):
        cursor.execute(sql)
    probes = Probes(
        locks=(f"dmp_eq_{os.getpid()}",),
        statements=("dmp_eq_s0",),
        handlers=("dmp_eq_h0",),
        tables=("dmp_eq_real", "dmp_eq_tmp"),
        unlocked_table="dmp_eq_unlocked",
    )
    yield Env(database, other, probes.locks[0], probes)
    cursor.execute("DROP TABLE IF EXISTS dmp_eq_real, dmp_eq_unlocked")
    cursor.execute(f"DROP DATABASE IF EXISTS `{other}`")


def checkout(pooled: WrapperFactory, placement: str) -> Any:
    """A checked-out pooled wrapper with *placement*; skips if the placement is not accepted yet."""
    db: Any = pooled(dict(PLACEMENTS[placement]))
    try:
        db.ensure_connection()
    except ImproperlyConfigured as exc:
        pytest.skip(f"OPTIONS['pool'] = {PLACEMENTS[placement]!r} is not accepted yet: {exc}")
    return db


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_first_checkout_is_fresh(env: Env, pooled: WrapperFactory, placement: str) -> None:
    db = checkout(pooled, placement)
    differences = diff(fingerprint(db, env.probes), fresh_fingerprint(db.settings_dict, env.probes))
    assert not differences, explain(differences, "pooled")


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("action", ACTIONS)
def test_reused_session_is_fresh(env: Env, pooled: WrapperFactory, placement: str, action: str) -> None:
    db = checkout(pooled, placement)
    first = connection_id(db)
    ACTIONS[action](db, env)
    db.close()
    db.ensure_connection()
    reused = fingerprint(db, env.probes)
    assert connection_id(db) == first, "max_size=1 must hand out the same server connection"
    differences = diff(reused, fresh_fingerprint(db.settings_dict, env.probes))
    assert not differences, explain(differences)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_no_backslash_escapes_cannot_open_an_injection(
    env: Env, pooled: WrapperFactory, stock: WrapperFactory, placement: str
) -> None:
    sql = "SELECT v FROM dmp_eq_real WHERE v = %s"
    assert query(stock(CONN_MAX_AGE=0), sql, [INJECTION]) == []
    db = checkout(pooled, placement)
    first = connection_id(db)
    query(db, "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    db.close()
    assert query(db, sql, [INJECTION]) == [], "the parameter ended the string literal: SQL injection"
    assert connection_id(db) == first


@pytest.mark.stock
@pytest.mark.parametrize("action", [name for name in ACTIONS if name != "nothing"])
def test_stock_persistent_connection_differs(env: Env, stock: WrapperFactory, action: str) -> None:
    db: Any = stock()
    first = connection_id(db)
    ACTIONS[action](db, env)
    db.close_if_unusable_or_obsolete()  # what Django does at the end of each request
    db.ensure_connection()
    reused = fingerprint(db, env.probes)
    differences = diff(reused, fresh_fingerprint(db.settings_dict, env.probes))
    if action in STOCK_RECONNECTS:
        assert connection_id(db) != first, "Django should have reconnected"
        assert not differences, explain(differences)
    else:
        assert connection_id(db) == first
        assert differences, "the stock backend leaks this: the oracle must see it"
