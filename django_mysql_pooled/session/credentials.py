"""Rotating credentials: ``OPTIONS["pool"]["credentials"]``, asked for every new login.

The provider (AWS RDS IAM tokens live 15 minutes) is called for every new
physical connection and for the reset ladder's ``COM_CHANGE_USER`` rung; its
result is used for that one login and kept nowhere else: not in the pool's
parameters, a snapshot, a log line, an exception message or a repr.

A rotation races with logins: a thread may be handed the old secret just
before the server stops accepting it. A new connection refused with
``ER_ACCESS_DENIED_ERROR`` therefore asks the provider once more and, when it
now returns other credentials, tries once with those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import MySQLdb

from django_mysql_pooled.config import Credentials
from django_mysql_pooled.session.errors import CredentialsError

__all__ = ["connect_with_credentials", "login", "with_credentials"]

_KEYS = frozenset({"user", "password"})
_ACCESS_DENIED = 1045  # ER_ACCESS_DENIED_ERROR


def login(alias: str, provider: Credentials) -> tuple[str, str]:
    """Call *provider*; return its ``(user, password)``.

    :raises CredentialsError: the provider raised (chained, its message not
        repeated), or did not return a mapping of ``user`` and ``password``
        strings (the values are never shown).
    """
    where = f"DATABASES[{alias!r}]['OPTIONS']['pool']['credentials']"
    try:
        result = provider()
    except Exception as exc:
        raise CredentialsError(f"{where} raised {type(exc).__name__}; no connection was opened") from exc
    if not isinstance(result, Mapping):
        raise CredentialsError(f"{where} returned a {type(result).__name__}, not a dict with 'user' and 'password'")
    keys = {str(key) for key in result}
    if keys != _KEYS or not all(isinstance(result[key], str) for key in _KEYS):
        raise CredentialsError(
            f"{where} must return {{'user': str, 'password': str}}; it returned the keys {sorted(keys)} "
            "(values not shown)"
        )
    return result["user"], result["password"]


def with_credentials(alias: str, params: Mapping[str, Any], provider: Credentials | None) -> dict[str, Any]:
    """A copy of the ``MySQLdb.connect()`` keyword arguments with the provider's user and password."""
    kwargs = dict(params)
    if provider is not None:
        kwargs.pop("passwd", None)
        kwargs["user"], kwargs["password"] = login(alias, provider)
    return kwargs


def connect_with_credentials(alias: str, params: Mapping[str, Any], provider: Credentials | None) -> Any:
    """``MySQLdb.connect()`` with the provider's credentials; once more with new ones after a refused login.

    :raises MySQLdb.OperationalError: the server's error; :class:`CredentialsError`: the provider failed.
    """
    kwargs = with_credentials(alias, params, provider)
    try:
        return MySQLdb.connect(**kwargs)
    except MySQLdb.OperationalError as exc:
        if provider is None or not exc.args or exc.args[0] != _ACCESS_DENIED:
            raise
        again = with_credentials(alias, params, provider)
        if (again["user"], again["password"]) == (kwargs["user"], kwargs["password"]):
            raise
    return MySQLdb.connect(**again)
