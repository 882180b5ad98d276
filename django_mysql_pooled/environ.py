"""A ``DATABASE_URL`` scheme for django-environ: ``mysql-pooled://``.

``import django_mysql_pooled.environ`` (or call :func:`register_scheme`) in
``settings.py`` before ``env.db()``::

    mysql-pooled://app:secret@127.0.0.1:3306/app?pool=true&pool_max_size=20

yields ``ENGINE: "django_mysql_pooled"`` and ``OPTIONS`` holding
``pool: "true"`` and ``pool_max_size: 20``; the backend folds every
``pool_<key>`` entry into ``OPTIONS["pool"]`` and coerces the strings. Any
``pool_<key>`` alone turns the pool on. Several hosts:
``mysql-pooled://app:secret@db1:3306,db2:3306/app?pool=true`` (give every
host its port, or none: a single port applies to every host, libpq's rule).
"""

from __future__ import annotations

import environ

__all__ = ["ENGINE", "SCHEME", "register_scheme"]

SCHEME = "mysql-pooled"
ENGINE = "django_mysql_pooled"


def register_scheme(env_class: type[environ.Env] = environ.Env) -> None:
    """Map ``mysql-pooled://`` to this backend in *env_class* (idempotent).

    The scheme also joins django-environ's ``POSTGRES_FAMILY``: the schemes
    whose URL may list several hosts (``u:p@db1:3306,db2:3306/app``), which
    django-environ parses into ``HOST: "db1,db2"`` and ``PORT: "3306,3306"``
    (see :mod:`django_mysql_pooled.addresses`). Its other PostgreSQL rules
    apply too: a path that starts with ``/`` (``db1//run/mysqld.sock/app``,
    or ``%2F`` encoded) is taken as ``HOST`` (a Unix socket) and ``NAME``, and
    ``%2C`` in a host name splits it into two hosts. A ``DATABASE_URL`` must
    therefore come whole from trusted configuration, never be assembled from
    request or tenant input (docs/security.rst).
    """
    env_class.DB_SCHEMES[SCHEME] = ENGINE
    if SCHEME not in env_class.POSTGRES_FAMILY:
        env_class.POSTGRES_FAMILY.append(SCHEME)


register_scheme()
