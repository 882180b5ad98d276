"""A pooled MySQL/MariaDB backend for Django.

Use it as ``ENGINE: "django_mysql_pooled"`` with ``OPTIONS["pool"]``. This
module only re-exports the public names; it reads no settings and opens
nothing.
"""

from __future__ import annotations

from django_mysql_pooled.cancel.scope import CancelToken
from django_mysql_pooled.errors import (
    CredentialsError,
    PoolClosed,
    PoolError,
    PoolTimeout,
    QueryCancelled,
    TooManyRequests,
)

__version__ = "0.1.0"

__all__ = [
    "CancelToken",
    "CredentialsError",
    "PoolClosed",
    "PoolError",
    "PoolTimeout",
    "QueryCancelled",
    "TooManyRequests",
]
