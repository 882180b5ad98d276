"""The exceptions the backend raises: the pool's, and query cancellation's.

The pool errors (:mod:`django_mysql_pooled.session.errors`) derive from
:class:`MySQLdb.OperationalError`, so Django's ``wrap_database_errors``
re-raises them as :class:`django.db.OperationalError` with the original
available as ``__cause__`` (the same scheme as ``psycopg_pool.errors``).
:class:`QueryCancelled` is raised above Django's cursor, so it is a
:class:`django.db.OperationalError` itself.
"""

from __future__ import annotations

from django_mysql_pooled.cancel.errors import CancelReason, QueryCancelled
from django_mysql_pooled.session.errors import CredentialsError, PoolClosed, PoolError, PoolTimeout, TooManyRequests

__all__ = [
    "CancelReason",
    "CredentialsError",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "QueryCancelled",
    "TooManyRequests",
]
