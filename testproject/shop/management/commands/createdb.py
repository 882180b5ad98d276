"""``manage.py createdb``: CREATE DATABASE IF NOT EXISTS for the ``default`` alias."""

from __future__ import annotations

from typing import Any

import MySQLdb
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections


class Command(BaseCommand):
    help = "Create the database of a DATABASES alias if it does not exist (connecting without a schema)."
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="the DATABASES alias (default: %(default)s)")

    def handle(self, *args: Any, **options: Any) -> None:
        wrapper = connections[options["database"]]
        name = wrapper.settings_dict["NAME"]
        if not name:
            raise CommandError(f"DATABASES[{options['database']!r}] has no NAME")
        # The driver's parameters exactly as the backend builds them (pool
        # options stripped), minus the schema, which may not exist yet.
        params: dict[str, Any] = wrapper.get_connection_params()
        params.pop("database", None)
        params.pop("db", None)
        target = f"{params.get('user', '')}@{params.get('host', 'localhost')}:{params.get('port', 3306)}"
        statement = (
            f"CREATE DATABASE IF NOT EXISTS {wrapper.ops.quote_name(name)} "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
        try:
            with MySQLdb.connect(**params) as conn, conn.cursor() as cursor:
                cursor.execute(statement)
        except MySQLdb.Error as exc:
            raise CommandError(f"cannot create database {name!r} on the server at {target}: {exc}") from exc
        self.stdout.write(f"database {name!r} ready on {target}")
