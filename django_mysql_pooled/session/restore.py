"""Reset a session and make it exactly what a new connection would be.

``COM_RESET_CONNECTION`` restores the server's session variables to the
current globals, rolls back, drops temporary tables, releases ``GET_LOCK``
and ``LOCK TABLES`` locks and forgets user variables and prepared
statements. It leaves three kinds of state untouched:

* on the server: the default schema (``USE other_db`` survives, although the
  reset sets ``character_set_database``/``collation_database`` to the
  server's defaults, not the schema's: only a ``USE`` puts those back, so the
  batch always sends one, measured on MariaDB 10.11), the active
  role on MariaDB (``SET ROLE`` survives; ``COM_CHANGE_USER`` keeps it too),
  and whatever the connection setup did after the handshake (the client's
  ``init_command``, mysqlclient's ``SET NAMES``/``sql_mode``, Django's session
  settings);
* in the client library: MariaDB Connector/C does not parse the reset's OK
  packet (``mysql_reset_connection()`` in ``libmariadb/mariadb_lib.c``), so
  the status flags of the previous reply stay: ``NO_BACKSLASH_ESCAPES`` (which
  decides how ``escape_string()`` quotes, an SQL injection when stale),
  autocommit and in-transaction; the client's character set stays whatever
  ``SET NAMES`` or ``set_character_set()`` chose last (the server is back at
  the handshake's), and so does its idea of the schema.

:class:`SessionRestorer` is the pool's reset callable. After the reset it
sends **one** batch that sets everything a new connection sets, in a new
connection's order, whatever the server's globals are now (nothing about the
server is cached): schema, role, ``init_command``, character set,
``sql_mode``, Django's session settings, autocommit. The batch's last reply
carries the server's real status flags, so the client library is right again
before anything is escaped. A second round trip is spent only when the
client's character set or schema, or the MariaDB role, still differ. Any
failure raises, and the pool discards the connection: a half-restored
session is never handed out.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from django_mysql_pooled.config import Credentials
from django_mysql_pooled.session.credentials import login
from django_mysql_pooled.session.grants import default_role
from django_mysql_pooled.session.native import (
    METHOD_CHANGE_USER,
    METHOD_RESET_CONNECTION,
    SERVER_MORE_RESULTS_EXIST,
    ResetFailed,
    native_client,
)
from django_mysql_pooled.session.statements import (
    hex_literal,
    join,
    quote_name,
    refuse_pending_results,
    run,
    run_sets,
)

__all__ = ["SessionRestorer"]

# Server errors meaning "this server or proxy does not implement
# COM_RESET_CONNECTION": fall back to COM_CHANGE_USER for this pool.
logger = logging.getLogger(__name__)

_RESET_UNSUPPORTED = (
    1047,  # ER_UNKNOWN_COM_ERROR: unknown command (MySQL < 5.7.3, some proxies)
    1235,  # ER_NOT_SUPPORTED_YET
)

# Set before a connection's first COM_RESET_CONNECTION and read after it: a reset clears it.
_PROBE_SET: Final = b"SET @__dmp_reset_probe = 1"
_PROBE_GET: Final = b"SELECT @__dmp_reset_probe"
_NOT_RESET: Final = "COM_RESET_CONNECTION was answered without resetting the session (a proxy?)"

# What the reset left, on MariaDB: the account's grants (its default role, grants.py; read
# now: SET DEFAULT ROLE may have changed it since the pool started), the statements
# SET profiling = 1 recorded (COM_RESET_CONNECTION keeps them), the schema and the role.
_MARIADB_TAIL: Final = ("SHOW GRANTS", "SHOW PROFILES", "SELECT DATABASE(), CURRENT_ROLE()")


class SessionRestorer:
    """The pool's ``reset`` callable: reset *conn*, then make it look new.

    :param params: the ``MySQLdb.connect()`` keyword arguments of the pool
        (``database``, ``user``, ``password``, ``init_command``, ``collation``,
        ``sql_mode``, ``charset``...).
    :param isolation_level: Django's isolation level (``"read committed"``) or
        ``None``.
    :param autocommit: Django's ``AUTOCOMMIT`` setting.
    :param alias: the database alias (in error messages).
    :param credentials: ``OPTIONS["pool"]["credentials"]``: ``COM_CHANGE_USER``
        logs in with what it returns now instead of ``user``/``password``.
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        isolation_level: str | None,
        autocommit: bool,
        alias: str = "default",
        credentials: Credentials | None = None,
    ) -> None:
        self.params = dict(params)
        self.alias = alias
        self.credentials = credentials
        self.database: str = self.params.get("database") or self.params.get("db") or ""
        self.isolation_level = isolation_level
        self.autocommit = autocommit
        self._native = native_client()
        self.use_reset_connection = self._native.reset_connection is not None
        #: The target answered COM_RESET_CONNECTION without resetting (see _verify_reset).
        self.reset_does_not_reset = False
        self._batches: dict[tuple[bool, bool, str], bytes] = {}  # (mariadb, MySQL roles, encoding) -> batch

    def _setup(self, mariadb: bool) -> list[str]:
        """What a new connection runs after the handshake, in its order.

        ``init_command`` (the client library), then mysqlclient's
        ``set_character_set()`` and ``sql_mode``, then Django's
        ``init_connection_state()`` and ``set_autocommit()``: the settings in
        ONE ``SET`` statement (assignments apply left to right), since each
        statement of a batch costs the server as much as a short query.
        """
        params = self.params
        statements = []
        init_command = str(params.get("init_command") or "").strip().rstrip(";").strip()
        if init_command:
            statements.append(init_command)
        assignments = []
        charset, collation = params.get("charset"), params.get("collation")
        if charset:
            assignments.append(f"NAMES {charset}" + (f" COLLATE {collation}" if collation else ""))
        if params.get("sql_mode"):
            assignments.append(f"sql_mode = {hex_literal(str(params['sql_mode']))}")
        # Django sets SQL_AUTO_IS_NULL = 0 when the server enables it; 0 either way.
        assignments.append("SQL_AUTO_IS_NULL = 0")
        if self.isolation_level:
            # SET SESSION TRANSACTION ISOLATION LEVEL as an assignment; MySQL
            # >= 5.7.20 names it transaction_isolation, MariaDB tx_isolation.
            variable = "tx_isolation" if mariadb else "transaction_isolation"
            assignments.append(f"{variable} = '{self.isolation_level.upper().replace(' ', '-')}'")
        assignments.append(f"autocommit = {int(self.autocommit)}")
        return [*statements, "SET " + ", ".join(assignments)]

    def __call__(self, conn: Any) -> str:
        """Reset *conn* and restore a new connection's session; return the method used.

        :raises MySQLdb.Error: the reset or the restore failed (the pool
            discards the connection).
        """
        status = self._native.server_status(conn)
        if status is None or status & SERVER_MORE_RESULTS_EXIST:
            refuse_pending_results(conn)  # raises, or reads them without Connector/C's flags
        method = METHOD_RESET_CONNECTION
        if self.use_reset_connection and getattr(conn, "_dmp_reset_verified", False) and not self.reset_does_not_reset:
            try:  # the common case: a connection reset before (see _reset)
                self._native.reset(conn)
            except ResetFailed as exc:
                if exc.args[0] not in _RESET_UNSUPPORTED:
                    raise
                self.use_reset_connection = False
                method = self._reset(conn)
        else:
            method = self._reset(conn)
        self.restore(conn)
        return method

    def _reset(self, conn: Any) -> str:
        if self.reset_does_not_reset:
            raise ResetFailed(0, _NOT_RESET)
        if self.use_reset_connection:
            verify = not getattr(conn, "_dmp_reset_verified", False)
            if verify:
                run(conn, _PROBE_SET)
            try:
                self._native.reset(conn)
            except ResetFailed as exc:
                if exc.args[0] not in _RESET_UNSUPPORTED:
                    raise
                self.use_reset_connection = False
            else:
                if verify:
                    self._verify_reset(conn)
                return METHOD_RESET_CONNECTION
        if self.credentials is not None:
            user, password = login(self.alias, self.credentials)
        else:
            user, password = self.params.get("user", ""), self.params.get("password", "")
        if self.database:
            conn.change_user(user, password, self.database)
        else:  # mysqlclient 2.3 refuses None for the schema
            conn.change_user(user, password)
        if not getattr(conn, "_dmp_reset_verified", False):
            self._verify_reset(conn)  # the probe set before the refused reset must be gone too
        return METHOD_CHANGE_USER

    def _verify_reset(self, conn: Any) -> None:
        """After a connection's first ``COM_RESET_CONNECTION``: did it clear the probe variable?

        A proxy may answer the command without resetting the session (Vitess
        has been reported to keep autocommit and user variables): then no
        connection of this pool is reused, each is closed at checkin and a new
        one opened (the reconnect rung), never ``COM_CHANGE_USER``, which such
        a target may not honour either.

        :raises ResetFailed: the session was not reset.
        """
        if run(conn, _PROBE_GET)[0] is not None:
            if not self.reset_does_not_reset:
                logger.warning("%s (database %r); connections are closed at checkin instead", _NOT_RESET, self.alias)
            self.reset_does_not_reset = True
            raise ResetFailed(0, _NOT_RESET)
        conn._dmp_reset_verified = True

    def restore(self, conn: Any) -> None:
        """Make a reset session look new, server side and client side.

        :raises MySQLdb.Error: a statement failed; :class:`ResetFailed` when
            the session cannot be made new (a schema selected on a pool
            without ``NAME``).
        """
        if conn.character_set_name() != conn._dmp_charset or conn.encoding != conn._dmp_encoding:
            conn.set_character_set(conn._dmp_charset)  # client and server, one round trip (rare)
        mariadb: bool = conn._dmp_mariadb
        batch = getattr(conn, "_dmp_restore_batch", None)  # constant per connection (its server kind, encoding)
        if batch is None:
            key = (mariadb, conn._dmp_mysql_roles, conn.encoding)
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = self._batch(mariadb, conn._dmp_mysql_roles).encode(conn.encoding)
            conn._dmp_restore_batch = batch
        database = self.database
        if mariadb:
            *_setup, grants, profiles, tail = run_sets(conn, batch)
            row = tail.fetch_row()[0]
            if profiles.num_rows():
                # SHOW PROFILES history survives the reset (and SET profiling = 0):
                # it would show this checkout's statements to the next one.
                raise ResetFailed(0, "a checkout left query profiles (SET profiling = 1) that no reset clears")
            role = default_role(grants.fetch_row(0))
            if row[1] != role:
                # SET ROLE survives the reset: activate the default role, then run the
                # setup again so that it runs under the role a new connection has.
                quoted = "NONE" if role is None else quote_name(role)
                run(conn, join([f"SET ROLE {quoted}", *self._setup(mariadb), "SELECT 1"]).encode(conn.encoding))
        else:
            row = run(conn, batch)
        if not database and row[0] is not None:
            raise ResetFailed(0, f"a checkout selected schema {row[0]!r} and the pool has no NAME to go back to")
        if database:
            schema = self._native.schema(conn)
            if schema is not None and schema != database:
                conn.select_db(database)  # session_track_schema is off: tell the client library

    def _batch(self, mariadb: bool, mysql_roles: bool) -> str:
        """The restore batch: schema, role, setup, then a row that tells what the reset left."""
        statements = [f"USE {quote_name(self.database)}"] if self.database else []
        if mysql_roles:
            statements.append("SET ROLE DEFAULT")
        tail = _MARIADB_TAIL if mariadb else ("SELECT DATABASE()",)
        return join([*statements, *self._setup(mariadb), *tail])
