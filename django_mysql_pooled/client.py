"""``manage.py dbshell`` (and the MySQL command-line tools Django runs, e.g. the
parallel test runner's ``mysqldump`` clone) for an alias that lists several hosts.

The ``mysql`` client takes one ``--host``: it gets the first host of the list
(:mod:`django_mysql_pooled.addresses`), as Django's own parameters do. With
one host nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.backends.mysql.client import DatabaseClient as MySQLDatabaseClient

from django_mysql_pooled.addresses import parse_hosts, split_label
from django_mysql_pooled.config import split_options

__all__ = ["DatabaseClient"]


class DatabaseClient(MySQLDatabaseClient):
    """Django's MySQL client, pointed at the first host of a host list."""

    @classmethod
    def settings_to_cmd_args_env(cls, settings_dict: dict[str, Any], parameters: Iterable[str]) -> Any:
        raw, driver = split_options(settings_dict.get("OPTIONS") or {})
        option = raw.get("hosts") if isinstance(raw, dict) else None
        hosts = parse_hosts("this alias", settings_dict, option)
        if hosts:
            host, port = split_label(hosts[0])
            settings_dict = {**settings_dict, "HOST": host, "PORT": str(port), "OPTIONS": driver}
        return super().settings_to_cmd_args_env(settings_dict, parameters)
