"""Statements on a raw mysqlclient connection, for the reset and restore: quoting, batches, pending results.

Also what is recorded on a connection when it is opened
(:func:`remember_new_session`), which the restore compares with later.
"""

from __future__ import annotations

from typing import Any

from MySQLdb import _mysql

from django_mysql_pooled.session.native import SERVER_MORE_RESULTS_EXIST, ResetFailed, native_client, remember_fd

_query: Any = _mysql.connection.query

__all__ = [
    "hex_literal",
    "join",
    "mysql_has_roles",
    "quote_name",
    "refuse_pending_results",
    "remember_new_session",
    "run",
    "run_sets",
]


def quote_name(name: str) -> str:
    """Quote an identifier with backticks (no backslash escapes: safe in every ``sql_mode``)."""
    return "`" + name.replace("`", "``") + "`"


def hex_literal(value: str) -> str:
    """A string literal that reads the same with or without ``NO_BACKSLASH_ESCAPES``/``ANSI_QUOTES``."""
    return "X'" + value.encode().hex() + "'" if value else "''"


def remember_new_session(conn: Any) -> None:
    """Record, on a connection just opened, what its client side looks like new.

    The character set and Python encoding mysqlclient chose at connect time
    are put back by :class:`SessionRestorer` if a checkout changed them. The
    server's kind (MariaDB, or MySQL with roles) does not change during a
    connection, so it is read once here.
    """
    conn._dmp_charset = conn.character_set_name()
    conn._dmp_encoding = conn.encoding
    conn._dmp_mariadb = "mariadb" in conn.get_server_info().lower()
    conn._dmp_mysql_roles = not conn._dmp_mariadb and mysql_has_roles(conn)
    remember_fd(conn)


def mysql_has_roles(conn: Any) -> bool:
    """MySQL has roles from 8.0 on (``SET ROLE DEFAULT``)."""
    version = conn.get_server_info().split("-")[0].split(".")
    try:
        return int(version[0]) >= 8
    except (ValueError, IndexError):  # pragma: no cover - an unknown server string
        return False


def join(statements: list[str]) -> str:
    # Separators start a line: a comment at the end of init_command ends before them.
    return "\n;".join(statements)


def run(conn: Any, batch: bytes) -> tuple[Any, ...]:
    """Run the statements of *batch* in one round trip; return the last result set's first row.

    Through mysqlclient's low-level calls (``query``, ``store_result``,
    ``next_result``: MySQL's C API for multiple statements,
    https://dev.mysql.com/doc/c-api/8.0/en/c-api-multiple-queries.html) rather
    than a cursor, which would add its bookkeeping to every checkin.

    :raises MySQLdb.Error: a statement failed (the server runs none after it).
    """
    sets = run_sets(conn, batch)
    rows = sets[-1].fetch_row() if sets else ()
    return rows[0] if rows else ()


def run_sets(conn: Any, batch: bytes) -> list[Any]:
    """Run the statements of *batch* in one round trip; return every result set (``_mysql.result``
    objects, rows not converted yet: ``fetch_row(0)`` or ``num_rows()``).

    :raises MySQLdb.Error: a statement failed (the server runs none after it).
    """
    _query(conn, batch)  # (mysqlclient's Connection.query() adds only a bytearray conversion)
    store, more = conn.store_result, conn.next_result
    sets = []
    while True:
        result = store()
        if result is not None:
            sets.append(result)
        if more():  # -1: no more results
            return sets


def refuse_pending_results(conn: Any) -> None:
    """Refuse a connection with result sets a checkout left unread (the rest of a multi-statement).

    ``mysql_reset_connection()`` would otherwise take the next result set
    for its own reply, and the session would be out of step.

    :raises ResetFailed: result sets are pending (read from MariaDB
        Connector/C's status flags); :class:`MySQLdb.Error`: an unbuffered
        result is still open ("commands out of sync"). The pool then closes
        the connection.
    """
    status = native_client().server_status(conn)
    if status is not None and status & SERVER_MORE_RESULTS_EXIST:
        # The rest may still be running on the server (SELECT 1; SELECT SLEEP(600)):
        # reading it could block the returning thread for as long. Close instead,
        # as the stock backend's close() does.
        raise ResetFailed(2014, "a checkout left result sets unread; the connection is closed")
    while conn.next_result() == 0:  # without MariaDB Connector/C's flags: read them
        conn.discard_result()
