"""The error a cancelled query raises."""

from __future__ import annotations

from typing import Literal

from django.db import OperationalError

__all__ = ["CancelReason", "QueryCancelled"]

#: Why a query was cancelled: its deadline passed, or a token was cancelled.
CancelReason = Literal["timeout", "cancelled"]


class QueryCancelled(OperationalError):
    """A ``cancellable()`` query was stopped (``KILL QUERY`` or the server's own time limit).

    Raised above Django's cursor, so it is a :class:`django.db.OperationalError`
    itself. ``args`` is ``(errno, message)`` like other MySQL errors: the
    server's code (1317 interrupted, 1969 MariaDB ``max_statement_time``, 3024
    MySQL ``MAX_EXECUTION_TIME``), or 1317 when the statement was refused before
    it was sent because the deadline had passed or the token was cancelled.

    :ivar reason: ``"timeout"`` or ``"cancelled"``.
    :ivar connection_id: the server connection id (``CONNECTION_ID()``) the
        statement ran on, ``None`` if unknown.
    :ivar elapsed: seconds (float) since the cancellable evaluation started.
    :ivar completed: ``True`` when the server completed the statement (a read
        that returned after its deadline or its kill: its value may be wrong,
        so it is not returned); ``args[0]`` is then ``None``, since the server
        reported no error. Whatever the statement wrote is kept: a ``SELECT``
        that calls a function writing rows, ``NEXTVAL()`` or ``GET_LOCK()`` has
        its effect even though it raised, so do not retry such a read blindly.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: CancelReason,
        connection_id: int | None,
        elapsed: float,
        errno: int | None = 1317,
        completed: bool = False,
    ) -> None:
        super().__init__(errno, message)
        self.reason: CancelReason = reason
        self.connection_id = connection_id
        self.elapsed = elapsed
        self.completed = completed
