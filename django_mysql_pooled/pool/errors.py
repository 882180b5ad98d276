"""The errors the pool core raises (no driver or Django dependency).

The Django backend raises subclasses that also derive from the driver's
:class:`MySQLdb.OperationalError` (see :mod:`django_mysql_pooled.errors`), so
Django's ``wrap_database_errors`` turns them into
:class:`django.db.OperationalError`: a :class:`~.pool.ConnectionPool` raises
the classes named by its :attr:`~.pool.ConnectionPool.errors`.
"""

from __future__ import annotations

import dataclasses

__all__ = ["ErrorClasses", "PoolClosed", "PoolError", "PoolTimeout", "TooManyRequests"]


class PoolError(Exception):
    """Base class for the errors raised by the pool."""


class PoolTimeout(PoolError):
    """No connection could be checked out within the pool's ``timeout``."""


class TooManyRequests(PoolError):
    """``max_waiting`` threads are already waiting for a connection."""


class PoolClosed(PoolError):
    """The pool was closed (or forked away) while or before it was used."""


@dataclasses.dataclass(frozen=True)
class ErrorClasses:
    """The exception classes a pool raises (each a subclass of the one above)."""

    timeout: type[PoolTimeout] = PoolTimeout
    too_many_requests: type[TooManyRequests] = TooManyRequests
    closed: type[PoolClosed] = PoolClosed
