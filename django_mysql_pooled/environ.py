"""A ``DATABASE_URL`` scheme for django-environ: ``mysql-pooled://``.

``import django_mysql_pooled.environ`` (or call :func:`register_scheme`) in
``settings.py`` before ``env.db()``::

    mysql-pooled://app:secret@127.0.0.1:3306/app?pool=true&pool_max_size=20

yields ``ENGINE: "django_mysql_pooled"`` and ``OPTIONS`` holding
``pool: "true"`` and ``pool_max_size: 20``; the backend folds every
``pool_<key>`` entry into ``OPTIONS["pool"]`` and coerces the strings. Any
``pool_<key>`` alone turns the pool on.
"""

from __future__ import annotations

import environ

__all__ = ["ENGINE", "SCHEME", "register_scheme"]

SCHEME = "mysql-pooled"
ENGINE = "django_mysql_pooled"


def register_scheme(env_class: type[environ.Env] = environ.Env) -> None:
    """Map ``mysql-pooled://`` to this backend in *env_class* (idempotent)."""
    env_class.DB_SCHEMES[SCHEME] = ENGINE


register_scheme()
