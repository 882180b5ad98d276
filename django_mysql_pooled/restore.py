"""What a checkout must put back after ``COM_RESET_CONNECTION``.

The reset restores session variables to the server's globals, but not the
default schema (``USE other_db`` survives), not the active role (``SET ROLE``
survives on MariaDB, where ``COM_CHANGE_USER`` keeps it too), and it drops the
effect of the client's ``init_command``. :class:`SessionPlan` learns the
server's defaults once per pool, from the first connection it opens, and
builds the shortest list of statements that makes a reset connection look
exactly like a new one to Django; an empty list costs no round trip.
"""

from __future__ import annotations

import threading
from typing import Any

import MySQLdb

from django_mysql_pooled.session import native_client

__all__ = ["SessionPlan"]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quote_role(role: str) -> str:
    return "'" + role.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SessionPlan:
    """Per-pool knowledge of the server's session defaults.

    :param database: the schema configured in ``NAME`` (``""`` for none).
    :param init_command: ``OPTIONS["init_command"]`` or ``None``.
    """

    def __init__(self, database: str, init_command: str | None) -> None:
        self.database = database
        self.init_command = init_command
        self._lock = threading.Lock()
        self.probed = False
        self.is_mariadb = False
        self.global_isolation: str | None = None
        self.roles_possible = True
        self.initial_role: str | None = None

    def probe(self, conn: Any) -> None:
        """Read the server's defaults from a connection opened for this pool (once)."""
        if self.probed:
            return
        with self._lock:
            if self.probed:
                return
            info = conn.get_server_info()
            self.is_mariadb = "mariadb" in info.lower()
            variable = "tx_isolation" if self.is_mariadb else "transaction_isolation"
            cursor = conn.cursor()
            try:
                cursor.execute(f"SELECT @@GLOBAL.{variable}")
                self.global_isolation = str(cursor.fetchone()[0]).replace("-", " ").lower()
                self._probe_roles(cursor)
            finally:
                cursor.close()
            self.probed = True

    def _probe_roles(self, cursor: Any) -> None:
        try:
            cursor.execute("SELECT COUNT(*) FROM information_schema.APPLICABLE_ROLES")
            self.roles_possible = cursor.fetchone()[0] > 0
            if self.roles_possible and self.is_mariadb:
                cursor.execute("SELECT CURRENT_ROLE()")
                self.initial_role = cursor.fetchone()[0]
        except MySQLdb.Error:  # pragma: no cover - servers without roles
            self.roles_possible = False

    def statements(self, conn: Any, isolation_level: str | None, auto_is_null: bool) -> list[str]:
        """Return what to run on a reset connection so that it looks new.

        :param isolation_level: Django's configured level (``"read committed"``)
            or ``None``.
        :param auto_is_null: whether Django wants ``SET SQL_AUTO_IS_NULL = 0``.
        """
        statements = []
        if self.database:
            current = native_client().schema(conn)
            if current != self.database:
                statements.append(f"USE {_quote(self.database)}")
        if self.roles_possible:
            if not self.is_mariadb:
                statements.append("SET ROLE DEFAULT")
            elif self.initial_role:
                statements.append(f"SET ROLE {_quote_role(self.initial_role)}")
            else:
                statements.append("SET ROLE NONE")
        if self.init_command:
            statements.append(self.init_command)
        if auto_is_null:
            statements.append("SET SQL_AUTO_IS_NULL = 0")
        if isolation_level and (self.init_command or isolation_level.lower() != self.global_isolation):
            statements.append(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation_level.upper()}")
        return statements
