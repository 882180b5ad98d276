"""System checks for pooled aliases (IDs ``django_mysql_pooled.E00x`` / ``W00x``).

Each hint links to the docs heading of the same ID. The settings checks run
with every ``manage.py`` command; the checks that compare the pool with the
server's variables are tagged ``database`` and run where Django asks for them
(``migrate``, ``check --database``), over a plain connection that opens no pool.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import MySQLdb
from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from django_mysql_pooled.config import PoolConfig, parse_pool_config
from django_mysql_pooled.monitoring.snapshots import query_server

__all__ = ["check_pool_server", "check_pool_settings", "is_pooled_wrapper", "server_messages", "settings_messages"]

#: The pooled ``DatabaseWrapper`` (``base.py``), recognised in a wrapper's class hierarchy: a
#: backend whose ``DatabaseWrapper`` subclasses it is checked too, whatever its ``ENGINE``.
WRAPPER = ("django_mysql_pooled.base", "DatabaseWrapper")
DOCS = "https://django-mysql-pooled.readthedocs.io/en/latest/checks.html"
#: A checkout ``timeout`` above this many seconds is reported (W005).
LONG_TIMEOUT = 120.0


def _hint(check_id: str, advice: str = "") -> str:
    """*advice* and a link to the docs heading of *check_id* (anchor ``django_mysql_pooled-w001``)."""
    return f"{advice + ' ' if advice else ''}See {DOCS}#{check_id.replace('.', '-').lower()}"


def _warning(number: str, message: str, advice: str = "") -> CheckMessage:
    check_id = f"django_mysql_pooled.W{number}"
    return checks.Warning(message, hint=_hint(check_id, advice), id=check_id)


def _error(number: str, message: str, advice: str = "") -> CheckMessage:
    check_id = f"django_mysql_pooled.E{number}"
    return Error(message, hint=_hint(check_id, advice), id=check_id)


def settings_messages(alias: str, settings_dict: Mapping[str, Any]) -> list[CheckMessage]:
    """E001 invalid options, E002 ``CONN_MAX_AGE != 0``, W001 no reset, W004/W005 ``timeout``."""
    conn_max_age = settings_dict.get("CONN_MAX_AGE", 0)
    try:
        config = parse_pool_config(alias, {**settings_dict, "CONN_MAX_AGE": 0})
    except ImproperlyConfigured as exc:
        return [_error("001", str(exc))]
    if config is None:
        return []
    messages = []
    if conn_max_age != 0:
        messages.append(
            _error(
                "002",
                f"DATABASES[{alias!r}]['CONN_MAX_AGE'] = {conn_max_age!r} cannot be combined with "
                "OPTIONS['pool']: the pool owns connection lifetime.",
                "Set CONN_MAX_AGE to 0 and use the pool's max_lifetime / max_idle instead.",
            )
        )
    if not config.reset:
        messages.append(
            _warning(
                "001",
                f"DATABASES[{alias!r}]['OPTIONS']['pool']['reset'] is False: session state "
                "(transactions, variables, temporary tables, locks) leaks between requests.",
            )
        )
    messages.extend(_timeout_messages(alias, config))
    return messages


def _timeout_messages(alias: str, config: PoolConfig) -> list[CheckMessage]:
    key = f"DATABASES[{alias!r}]['OPTIONS']['pool']['timeout']"
    if config.timeout == 0:
        return [
            _warning(
                "004",
                f"{key} is 0: a checkout fails with PoolTimeout at once whenever all "
                f"{config.max_size} connections are in use, even for a moment.",
                "Set a timeout of a few seconds, below your request timeout.",
            )
        ]
    if config.timeout > LONG_TIMEOUT:
        return [
            _warning(
                "005",
                f"{key} is {config.timeout:g} s (more than {LONG_TIMEOUT:g} s): when the pool is "
                "exhausted, requests queue for longer than a client or proxy waits for them.",
                "Set a timeout below your request timeout (e.g. gunicorn's --timeout).",
            )
        ]
    return []


def server_messages(alias: str, config: PoolConfig, server: Mapping[str, int]) -> list[CheckMessage]:
    """W002 ``max_size`` above the server's connection limit, W003 ``max_lifetime`` not below ``wait_timeout``."""
    messages = []
    limits = [(name, server[name]) for name in ("max_connections", "max_user_connections") if server.get(name)]
    for name, limit in limits:
        if config.max_size > limit:
            messages.append(
                _warning(
                    "002",
                    f"DATABASES[{alias!r}]['OPTIONS']['pool']['max_size'] = {config.max_size} is larger "
                    f"than the server's {name} ({limit}): this process alone can exhaust it.",
                    f"Lower max_size, or raise {name} on the server.",
                )
            )
    wait_timeout = server.get("wait_timeout")
    if wait_timeout and config.max_lifetime >= wait_timeout:
        messages.append(
            _warning(
                "003",
                f"DATABASES[{alias!r}]['OPTIONS']['pool']['max_lifetime'] = {config.max_lifetime:g} s is "
                f"not below the server's wait_timeout ({wait_timeout} s): the server closes idle "
                "connections first, and each is found broken at its next checkout.",
                f"Set max_lifetime below {wait_timeout} s, or raise wait_timeout.",
            )
        )
    return messages


def is_pooled_wrapper(wrapper: object) -> bool:
    """Whether *wrapper* is this package's ``DatabaseWrapper`` or a subclass of it.

    Read from the class hierarchy (this layer does not import the backend).
    """
    return any((cls.__module__, cls.__qualname__) == WRAPPER for cls in type(wrapper).__mro__)


def _pooled_aliases(aliases: Any) -> list[tuple[str, Mapping[str, Any]]]:
    return [
        (alias, connections[alias].settings_dict)
        for alias in settings.DATABASES
        if (aliases is None or alias in aliases) and is_pooled_wrapper(connections[alias])
    ]


@register()
def check_pool_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The checks of the settings alone (no connection)."""
    messages: list[CheckMessage] = []
    for alias, settings_dict in _pooled_aliases(None):
        messages.extend(settings_messages(alias, settings_dict))
    return messages


@register(Tags.database)
def check_pool_server(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The checks against the server's variables, for the *databases* Django asks about."""
    messages: list[CheckMessage] = []
    if not databases:
        return messages
    for alias, settings_dict in _pooled_aliases(databases):
        try:
            config = parse_pool_config(alias, settings_dict)
        except ImproperlyConfigured:
            continue  # E001 / E002
        if config is None:
            continue
        try:
            server = query_server(connections[alias].get_connection_params())
        except MySQLdb.Error:
            continue  # not reachable: Django's own checks and the first query say so
        messages.extend(server_messages(alias, config, server))
    return messages
