"""Run-time changes on the server reach reused sessions: nothing about the server is cached.

Regression tests (private server: they change globals and roles). Before the
fix the pool read the server's defaults and roles once, from its first
connection: after ``SET GLOBAL autocommit = 0`` writes were rolled back at
checkin while Django believed it was in autocommit, and a role granted later
stayed active in the next checkout after ``SET ROLE``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.conftest import PoolTarget, PoolTargetFactory
from tests.faults.mariadb import DATABASE, PASSWORD, USER, PrivateMariaDB, requires_mariadbd

pytestmark = requires_mariadbd

ACCOUNT = f"'{USER}'@'127.0.0.1'"
ROLE = "dmp_globals_role"


def root(server: PrivateMariaDB, *statements: str) -> list[tuple[Any, ...]]:
    conn = server.connect()
    try:
        cursor = conn.cursor()
        rows: list[tuple[Any, ...]] = []
        for sql in statements:
            cursor.execute(sql)
            rows = list(cursor.fetchall())
        return rows
    finally:
        conn.close()


def scalar(db: Any, sql: str) -> Any:
    with db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@pytest.fixture
def target(private_server: PrivateMariaDB, pool_target: PoolTargetFactory) -> Iterator[PoolTarget]:
    saved = root(private_server, "SELECT @@GLOBAL.autocommit, @@GLOBAL.tx_isolation, @@GLOBAL.sql_mode")[0]
    root(
        private_server,
        f"CREATE TABLE IF NOT EXISTS {DATABASE}.dmp_globals (v INT)",
        f"DELETE FROM {DATABASE}.dmp_globals",
    )
    yield pool_target({"max_size": 1})
    root(
        private_server,
        f"SET GLOBAL autocommit = {int(saved[0])}",
        f"SET GLOBAL tx_isolation = '{saved[1]}'",
        f"SET GLOBAL sql_mode = '{saved[2]}'",
        f"DROP ROLE IF EXISTS {ROLE}",
        f"DROP TABLE IF EXISTS {DATABASE}.dmp_globals",
    )


def test_writes_survive_a_global_autocommit_off(private_server: PrivateMariaDB, target: PoolTarget) -> None:
    db = target.wrapper()
    first = scalar(db, "SELECT CONNECTION_ID()")
    root(private_server, "SET GLOBAL autocommit = 0")  # a managed-database parameter change
    db.close()
    with db.cursor() as cursor:  # the same server connection, reset
        cursor.execute("INSERT INTO dmp_globals (v) VALUES (1)")
    assert scalar(db, "SELECT CONNECTION_ID()") == first
    assert scalar(db, "SELECT @@SESSION.autocommit") == 1  # what Django's AUTOCOMMIT asks for
    db.close()
    assert root(private_server, f"SELECT COUNT(*) FROM {DATABASE}.dmp_globals") == [(1,)]


def test_global_sql_mode_and_isolation_changes_reach_reused_sessions(
    private_server: PrivateMariaDB, target: PoolTarget
) -> None:
    db = target.wrapper()
    scalar(db, "SELECT 1")
    root(private_server, "SET GLOBAL sql_mode = 'ANSI_QUOTES,NO_BACKSLASH_ESCAPES'")
    db.close()
    assert scalar(db, "SELECT @@SESSION.sql_mode") == "ANSI_QUOTES,NO_BACKSLASH_ESCAPES"
    with db.cursor() as cursor:  # the client library escapes for the server's mode
        cursor.execute("SELECT %s", ["it's a \\ backslash"])
        assert cursor.fetchone()[0] == "it's a \\ backslash"
    db.close()


def test_a_role_granted_later_does_not_outlive_its_checkout(private_server: PrivateMariaDB, target: PoolTarget) -> None:
    db = target.wrapper()
    scalar(db, "SELECT 1")  # the pool exists before the role does
    db.close()
    root(private_server, f"CREATE ROLE {ROLE}", f"GRANT SELECT ON mysql.* TO {ROLE}", f"GRANT {ROLE} TO {ACCOUNT}")
    with db.cursor() as cursor:
        cursor.execute(f"SET ROLE {ROLE}")
    assert scalar(db, "SELECT CURRENT_ROLE()") == ROLE
    db.close()
    assert scalar(db, "SELECT CURRENT_ROLE()") is None  # a new connection has no role active
    db.close()
    root(private_server, f"SET DEFAULT ROLE {ROLE} FOR {ACCOUNT}")
    scalar(db, "SELECT 1")
    db.close()
    assert scalar(db, "SELECT CURRENT_ROLE()") == ROLE  # a new connection would start with it
    db.close()


def test_an_xa_transaction_left_at_checkin_closes_the_connection(
    private_server: PrivateMariaDB, target: PoolTarget
) -> None:
    # COM_RESET_CONNECTION leaves a prepared XA transaction attached to the
    # session: the next checkout's writes would fail (error 1031). The connection
    # is closed instead, as the stock backend's close() does; the transaction
    # stays recoverable.
    db = target.wrapper()
    first = scalar(db, "SELECT CONNECTION_ID()")
    with db.cursor() as cursor:
        for sql in (
            "XA START 'dmp_xa'",
            "INSERT INTO dmp_globals (v) VALUES (1)",
            "XA END 'dmp_xa'",
            "XA PREPARE 'dmp_xa'",
        ):
            cursor.execute(sql)
    db.close()
    try:
        assert scalar(db, "SELECT CONNECTION_ID()") != first
        with db.cursor() as cursor:
            cursor.execute("INSERT INTO dmp_globals (v) VALUES (2)")  # no XA state here
        db.close()
        assert [row[3] for row in root(private_server, "XA RECOVER")] == [b"dmp_xa"]
    finally:
        root(private_server, "XA ROLLBACK 'dmp_xa'")


ODD_ROLE = "dmp role`s FOR x"  # needs quoting, contains the quote character and " FOR "


def new_session_role(server: PrivateMariaDB) -> Any:
    """What a new connection of the pool's account starts with: the oracle."""
    conn = server.connect(user=USER, password=PASSWORD, database=DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT CURRENT_ROLE()")
        return cursor.fetchone()[0]
    finally:
        conn.close()


@pytest.mark.parametrize("role", [ROLE, ODD_ROLE])
@pytest.mark.parametrize(
    "quoting",
    [
        "SET GLOBAL sql_quote_show_create = ON",
        "SET GLOBAL sql_quote_show_create = OFF",  # SHOW GRANTS quotes only where needed
        "SET GLOBAL sql_mode = 'ANSI_QUOTES'",  # ... and with double quotes
    ],
)
def test_each_checkout_starts_with_the_role_a_new_connection_gets(
    private_server: PrivateMariaDB, target: PoolTarget, role: str, quoting: str
) -> None:
    """Default role set, changed, revoked while the pool runs: after each, a reused session's role is a new one's."""
    quoted = "`" + role.replace("`", "``") + "`"
    saved = root(private_server, "SELECT @@GLOBAL.sql_quote_show_create")[0][0]
    root(private_server, quoting, f"CREATE ROLE {quoted}", f"CREATE ROLE {ROLE}2")
    try:
        db = target.wrapper()
        first = scalar(db, "SELECT CONNECTION_ID()")
        steps = [
            f"GRANT {quoted} TO {ACCOUNT}",
            f"SET DEFAULT ROLE {quoted} FOR {ACCOUNT}",
            f"GRANT {ROLE}2 TO {ACCOUNT}",
            f"REVOKE {quoted} FROM {ACCOUNT}",  # the default stays set, but is no longer granted
            f"GRANT {quoted} TO {ACCOUNT}",
            f"SET DEFAULT ROLE {ROLE}2 FOR {ACCOUNT}",
            f"SET DEFAULT ROLE NONE FOR {ACCOUNT}",
        ]
        for step in steps:
            root(private_server, step)
            with db.cursor() as cursor:  # the checkout switches roles; the reset must undo it
                cursor.execute("SET ROLE NONE" if "NONE" not in step else f"SET ROLE {ROLE}2")
            db.close()
            assert scalar(db, "SELECT CURRENT_ROLE()") == new_session_role(private_server), step
            db.close()
        assert scalar(db, "SELECT CONNECTION_ID()") == first  # one session throughout: reset, never reopened
        db.close()
    finally:
        root(
            private_server,
            f"SET GLOBAL sql_quote_show_create = {int(saved)}",
            f"SET DEFAULT ROLE NONE FOR {ACCOUNT}",
            f"DROP ROLE IF EXISTS {quoted}",
            f"DROP ROLE IF EXISTS {ROLE}2",
        )
