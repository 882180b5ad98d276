"""What a checkout must put back after ``COM_RESET_CONNECTION``.

The reset restores session variables to the server's globals, but not the
default schema (``USE other_db`` survives), not the active role (``SET ROLE``
survives on MariaDB, where ``COM_CHANGE_USER`` keeps it too), and it drops the
effect of the client's ``init_command``. It also drops what mysqlclient does
after connecting (``collation`` and ``sql_mode`` connect options), restores the
character set of the handshake without telling the client library (which
keeps escaping with whatever ``SET NAMES`` chose before, an SQL injection
risk with GBK or Big5), and leaves the client's autocommit flag stale.
:class:`SessionPlan` learns the server's defaults and what a new connection
looks like once per pool, from the first connection it opens, and builds the
shortest list of statements that makes a reset connection look exactly like
a new one to Django; an empty list costs no round trip.
"""

from __future__ import annotations

import threading
from typing import Any

import MySQLdb

from django_mysql_pooled.session import native_client

__all__ = ["SessionPlan"]


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quote_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
        self.global_autocommit = True
        # Whether the client library learns of USE (session_track_schema); without
        # it the client's idea of the schema is stale and USE is always sent. A
        # checkout that turns tracking off for itself before a USE is not noticed.
        self.schema_tracked = True
        # A new connection as mysqlclient and init_command leave it:
        self.charset = ""  # the client library's character set
        self.encoding = ""  # mysqlclient's Python-side encoding
        self.collation = ""  # @@collation_connection
        self.reset_collation = ""  # what COM_RESET_CONNECTION restores (the handshake's)
        self.sql_mode: str | None = None  # @@sql_mode when it differs from the global one
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
                cursor.execute(
                    f"SELECT @@GLOBAL.{variable}, @@GLOBAL.autocommit, @@SESSION.collation_connection, "
                    "@@SESSION.sql_mode, @@GLOBAL.sql_mode, @@GLOBAL.session_track_schema"
                )
                level, autocommit, self.collation, sql_mode, global_sql_mode, tracked = cursor.fetchone()
                self.schema_tracked = bool(tracked)
                self.global_isolation = str(level).replace("-", " ").lower()
                self.global_autocommit = bool(autocommit)
                self.sql_mode = None if sql_mode == global_sql_mode else sql_mode
                self.charset = conn.character_set_name()
                self.encoding = conn.encoding
                self.reset_collation = conn.get_character_set_info()["collation"]
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

    def statements(self, conn: Any, isolation_level: str | None, auto_is_null: bool) -> tuple[list[str], list[str]]:
        """Return what to run on a reset connection so that it looks new.

        Returns ``(now, deferrable)``: ``now`` restores what a new connection
        has before Django sees it (schema, role, ``init_command``, character
        set, ``sql_mode``, autocommit) and is sent at checkout; ``deferrable``
        holds Django's own session settings (``SQL_AUTO_IS_NULL``, the
        isolation level), one statement each, which the backend sends in the
        same packet as the checkout's first statement. With an
        ``init_command`` everything is in ``now``, in a new connection's order
        (Django's settings come after it).

        :param isolation_level: Django's configured level (``"read committed"``)
            or ``None``.
        :param auto_is_null: whether Django wants ``SET SQL_AUTO_IS_NULL = 0``.

        Called after Django's ``set_autocommit()``. Statements follow the order
        of a new connection: schema and role (handshake), ``init_command``,
        mysqlclient's ``SET NAMES`` and ``sql_mode``, then Django's settings.
        """
        statements = []
        if self.database:
            current = native_client().schema(conn) if self.schema_tracked else None
            if current != self.database:
                statements.append(f"USE {_quote(self.database)}")
        if self.roles_possible:
            if not self.is_mariadb:
                statements.append("SET ROLE DEFAULT")
            elif self.initial_role:
                statements.append(f"SET ROLE {_quote_string(self.initial_role)}")
            else:
                statements.append("SET ROLE NONE")
        if self.init_command:
            statements.append(self.init_command)
        if self._restore_client_charset(conn) or self.init_command or self.collation != self.reset_collation:
            statements.append(f"SET NAMES {self.charset} COLLATE {self.collation}")
        if self.sql_mode is not None:
            statements.append(f"SET SESSION sql_mode = {_quote_string(self.sql_mode)}")
        # The reset does not update the client's status flags, so mysqlclient may
        # have skipped Django's SET autocommit: its flag now says what Django wants.
        autocommit = bool(conn.get_autocommit())
        if self.init_command or autocommit != self.global_autocommit:
            statements.append(f"SET autocommit = {int(autocommit)}")
        django = []
        if auto_is_null:
            django.append("SET SQL_AUTO_IS_NULL = 0")
        if isolation_level and (self.init_command or isolation_level.lower() != self.global_isolation):
            django.append(f"SET SESSION TRANSACTION ISOLATION LEVEL {isolation_level.upper()}")
        if self.init_command:
            return statements + django, []
        return statements, django

    def _restore_client_charset(self, conn: Any) -> bool:
        """Point the client library back at a new connection's character set.

        ``SET NAMES`` (tracked by MariaDB Connector/C) and ``set_character_set()``
        change the client's character set; the reset restores only the
        server's. Returns whether it had to (the collation then needs setting).
        """
        if conn.character_set_name() == self.charset and conn.encoding == self.encoding:
            return False
        conn.set_character_set(self.charset)  # sends SET NAMES: one round trip, rare
        return True
