"""Send session settings that differ from the pool's in the same packet as the first statement.

The pool's reset (at checkin by default) restores Django's session settings
of the wrapper that built the pool. A wrapper whose ``OPTIONS`` differ (a
``connection.copy()`` with another isolation level) would need a round trip
of its own on every checkout: instead the difference is kept pending and sent
as a multi-statement prefix of the checkout's first statement (mysqlclient
enables ``CLIENT_MULTI_STATEMENTS``;
https://dev.mysql.com/doc/c-api/8.0/en/c-api-multiple-queries.html). The
prefix's results are consumed before Django sees the statement's own.

Edge cases: ``executemany()`` and ``callproc()`` send the pending settings on
their own first; a change of autocommit (``atomic()`` as the first thing)
sends them together with ``SET autocommit``; a failure inside the prefix
raises and marks the connection broken, so it is closed at checkin.

Every cursor belongs to one checkout: used after ``connection.close()`` it
fails as the stock backend's does (error 2006) and never reaches the
connection, which may serve another request by then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import MySQLdb as Database
from django.db import IntegrityError
from django.db.backends.mysql.base import CursorWrapper

from django_mysql_pooled import identity

__all__ = ["PendingSetup", "SetupCursorWrapper", "run_batch"]


#: The stock backend's error for a cursor used after ``connection.close()``
#: (CR_SERVER_GONE_ERROR: the cursor's connection is closed).
STALE_CURSOR = 2006


class PendingSetup(Protocol):
    """What the cursor needs from the connection wrapper."""

    checkout_token: object | None
    _pending_setup: list[str] | None

    def take_pending_setup(self) -> list[str] | None: ...

    def setup_failed(self) -> None: ...

    def flush_pending_setup(self, cursor: Any, *then: str) -> None: ...

    def statement_failed(self, exc: BaseException) -> None: ...


def run_batch(cursor: Any, statements: Sequence[str]) -> None:
    """Run *statements* in one round trip on a raw MySQLdb *cursor*, consuming every result
    (a server identity probe's row is recorded on the connection)."""
    cursor.execute("; ".join(statements))
    _keep_identity(cursor)
    while cursor.nextset():
        _keep_identity(cursor)


def _keep_identity(cursor: Any) -> None:
    """Record the row of a setup statement that returned one: the server identity probe
    (:mod:`django_mysql_pooled.identity`), sent with a new connection's first statement."""
    if cursor.description is not None:
        identity.remember(cursor.connection, cursor.fetchone())


class SetupCursorWrapper(CursorWrapper):
    """Django's MySQL ``CursorWrapper`` that prefixes the pending session settings."""

    def __init__(self, cursor: Any, db: PendingSetup) -> None:
        self.cursor = cursor  # (CursorWrapper.__init__'s one line, without the call)
        self.db = db
        self.token = db.checkout_token

    def _check_checkout(self) -> None:
        """Fail as the stock backend does when this cursor's checkout has ended.

        The connection may serve another request now: nothing may reach it
        through a cursor kept past ``connection.close()``.

        :raises MySQLdb.OperationalError: 2006, as a closed connection's cursor.
        """
        if self.token is not self.db.checkout_token or self.token is None:
            raise Database.OperationalError(
                STALE_CURSOR,
                "MySQL server has gone away: this cursor's checkout ended (connection.close() "
                "returned its connection to the pool); open a new cursor",
            )

    def execute(self, query: str, args: Any = None) -> Any:
        db = self.db
        if self.token is not db.checkout_token or self.token is None:
            self._check_checkout()  # raises
        if not db._pending_setup:  # every statement but a checkout's first, often that too
            try:
                return self.cursor.execute(query, args)
            except Database.OperationalError as exc:
                if exc.args[0] in self.codes_for_integrityerror:  # misclassified: as the stock CursorWrapper
                    raise IntegrityError(*tuple(exc.args))  # noqa: B904 - the stock wrapper's exception chain
                db.statement_failed(exc)
                raise
            except Database.Error as exc:
                db.statement_failed(exc)
                raise
        return self._execute_after(db.take_pending_setup() or [], query, args)

    def _execute_after(self, setup: list[str], query: str, args: Any) -> Any:
        """Execute *query* with the pending *setup* statements as its multi-statement prefix."""
        head = "; ".join(setup) + "; "
        cursor = self.cursor
        try:
            # args is None means no interpolation; otherwise escape the prefix's %.
            cursor.execute((head if args is None else head.replace("%", "%%")) + query, args)
            _keep_identity(cursor)
            for _ in range(len(setup) - 1):
                cursor.nextset()
                _keep_identity(cursor)
        except Database.Error:
            self.db.setup_failed()
            raise
        try:
            cursor.nextset()  # the statement's own result (or error)
        except Database.OperationalError as exc:
            if exc.args[0] in self.codes_for_integrityerror:
                raise IntegrityError(*tuple(exc.args)) from exc
            self.db.statement_failed(exc)
            raise
        except Database.Error as exc:
            self.db.statement_failed(exc)
            raise
        finally:
            executed = getattr(cursor, "_executed", None)
            if isinstance(executed, bytes):  # what last_executed_query() shows
                cursor._executed = executed[len(head.encode()) :]
        return cursor.rowcount

    def executemany(self, query: str, args: Any) -> Any:
        self._check_checkout()
        self.db.flush_pending_setup(self.cursor)
        try:
            return super().executemany(query, args)
        except Database.Error as exc:
            self.db.statement_failed(exc)
            raise

    def callproc(self, procname: str, args: Any = ()) -> Any:
        self._check_checkout()
        self.db.flush_pending_setup(self.cursor)
        return self.cursor.callproc(procname, args)

    def nextset(self) -> Any:
        self._check_checkout()
        return self.cursor.nextset()

    def close(self) -> None:
        if self.token is not self.db.checkout_token:
            # The connection was reset (or closed) at checkin and may be someone else's now.
            self.cursor.connection = None
            return
        self.cursor.close()
