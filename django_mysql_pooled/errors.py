"""Exceptions raised by the pool.

All of them derive from :class:`MySQLdb.OperationalError`, so Django's
``wrap_database_errors`` re-raises them as :class:`django.db.OperationalError`
with the original available as ``__cause__`` (the same scheme as
``psycopg_pool.errors``).
"""

from __future__ import annotations

import MySQLdb

__all__ = ["PoolClosed", "PoolError", "PoolTimeout", "TooManyRequests"]


class PoolError(MySQLdb.OperationalError):
    """Base class for the errors raised by the pool."""


class PoolTimeout(PoolError):
    """No connection could be checked out within the pool's ``timeout``."""


class TooManyRequests(PoolError):
    """``max_waiting`` threads are already waiting for a connection."""


class PoolClosed(PoolError):
    """The pool was closed (or forked away) while or before it was used."""
