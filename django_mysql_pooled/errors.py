"""Exceptions raised by the pool and by query cancellation.

The pool errors derive from :class:`MySQLdb.OperationalError`, so Django's
``wrap_database_errors`` re-raises them as :class:`django.db.OperationalError`
with the original available as ``__cause__`` (the same scheme as
``psycopg_pool.errors``). :class:`QueryCancelled` is raised above Django's
cursor, so it is a :class:`django.db.OperationalError` itself.
"""

from __future__ import annotations

from typing import Literal

import MySQLdb
from django.db import OperationalError

__all__ = ["PoolClosed", "PoolError", "PoolTimeout", "QueryCancelled", "TooManyRequests"]


class PoolError(MySQLdb.OperationalError):
    """Base class for the errors raised by the pool."""


class PoolTimeout(PoolError):
    """No connection could be checked out within the pool's ``timeout``."""


class TooManyRequests(PoolError):
    """``max_waiting`` threads are already waiting for a connection."""


class PoolClosed(PoolError):
    """The pool was closed (or forked away) while or before it was used."""


#: Why a query was cancelled: its deadline passed, or a token was cancelled.
CancelReason = Literal["timeout", "cancelled"]


class QueryCancelled(OperationalError):
    """A ``cancellable()`` query was stopped (``KILL QUERY`` or the server's own time limit).

    ``args`` is ``(errno, message)`` like other MySQL errors: the server's code
    (1317 interrupted, 1969 MariaDB ``max_statement_time``, 3024 MySQL
    ``MAX_EXECUTION_TIME``), or 1317 when the statement was refused before it
    was sent because the deadline had passed or the token was cancelled.

    :ivar reason: ``"timeout"`` or ``"cancelled"``.
    :ivar connection_id: the server connection id (``CONNECTION_ID()``) the
        statement ran on, ``None`` if unknown.
    :ivar elapsed: seconds (float) since the cancellable evaluation started.
    """

    def __init__(
        self, message: str, *, reason: CancelReason, connection_id: int | None, elapsed: float, errno: int = 1317
    ) -> None:
        super().__init__(errno, message)
        self.reason: CancelReason = reason
        self.connection_id = connection_id
        self.elapsed = elapsed
