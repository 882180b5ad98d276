"""The pool errors as the backend raises them: the pool core's, derived from the driver's error too.

They derive from :class:`MySQLdb.OperationalError`, so Django's
``wrap_database_errors`` re-raises them as :class:`django.db.OperationalError`
with the original available as ``__cause__`` (the same scheme as
``psycopg_pool.errors``), and from the pool core's classes
(:mod:`django_mysql_pooled.pool.errors`).
"""

from __future__ import annotations

import MySQLdb

from django_mysql_pooled.pool import errors as core

__all__ = ["DRIVER_ERRORS", "CredentialsError", "PoolClosed", "PoolError", "PoolTimeout", "TooManyRequests"]


class PoolError(core.PoolError, MySQLdb.OperationalError):
    """Base class for the errors raised by the pool."""


class PoolTimeout(PoolError, core.PoolTimeout):
    """No connection could be checked out within the pool's ``timeout``."""


class TooManyRequests(PoolError, core.TooManyRequests):
    """``max_waiting`` threads are already waiting for a connection."""


class PoolClosed(PoolError, core.PoolClosed):
    """The pool was closed (or forked away) while or before it was used."""


class CredentialsError(PoolError):
    """``OPTIONS["pool"]["credentials"]`` raised, or returned something other than a user and a password."""


#: What the backend's pools raise.
DRIVER_ERRORS = core.ErrorClasses(timeout=PoolTimeout, too_many_requests=TooManyRequests, closed=PoolClosed)
