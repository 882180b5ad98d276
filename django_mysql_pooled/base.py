"""``ENGINE: "django_mysql_pooled"``: Django's MySQL backend with a connection pool.

Without ``OPTIONS["pool"]`` it behaves exactly like
``django.db.backends.mysql``. With it, ``get_new_connection()`` checks a
connection out of the alias's process-wide pool (reset with
``COM_RESET_CONNECTION``) and ``_close()`` returns it, as Django's PostgreSQL
backend does with psycopg_pool (Django >= 5.1).
"""

from __future__ import annotations

import math
import os
import weakref
from typing import Any

import MySQLdb
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from django.db.backends.mysql.base import DatabaseWrapper as MySQLDatabaseWrapper

from django_mysql_pooled import registry
from django_mysql_pooled.config import PoolConfig, parse_pool_config, split_options
from django_mysql_pooled.creation import DatabaseCreation
from django_mysql_pooled.cursor import SetupCursorWrapper, run_batch
from django_mysql_pooled.features import DatabaseFeatures
from django_mysql_pooled.pool import ConnectionPool, logger
from django_mysql_pooled.restore import SessionRestorer, remember_new_session
from django_mysql_pooled.session import (
    SERVER_STATUS_IN_TRANS,
    detach_after_fork,
    interrupt,
    native_client,
    socket_alive,
)
from django_mysql_pooled.stats import publisher_for

__all__ = ["DatabaseWrapper"]


def _open(alias: str, params: dict[str, Any], timeout: float | None) -> Any:
    """Open a new server connection for the pool (called in any thread).

    :raises MySQLdb.OperationalError: the driver's error, its message naming
        the alias and the server it tried (bad credentials, unknown database,
        nothing listening, not a MySQL server, too many connections).
    """
    kwargs = dict(params)
    if timeout is not None and "connect_timeout" not in kwargs:
        kwargs["connect_timeout"] = max(1, math.ceil(timeout))
    try:
        conn: Any = MySQLdb.connect(**kwargs)
    except MySQLdb.OperationalError as exc:
        where = kwargs.get("unix_socket") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 3306)}"
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise type(exc)(exc.args[0], f"{message} (database {alias!r} at {where})") from exc
    # As the stock backend: mysqlclient's bytes encoder is a no-op placeholder.
    if conn.encoders.get(bytes) is bytes:
        conn.encoders.pop(bytes)
    remember_new_session(conn)
    return conn


def _ping(conn: Any) -> str:
    conn.ping()
    return "ping"


def _close(conn: Any) -> None:
    conn.close()


def _shared(wrapper: Any) -> bool:
    return bool(wrapper.allow_thread_sharing)


class _DjangoPool(ConnectionPool[Any]):
    """The pool plus what the Django side needs to know about its sessions."""

    def __init__(
        self,
        *args: Any,
        config: PoolConfig,
        restorer: SessionRestorer,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        #: What every reset restores (Django's isolation level among it).
        self.restorer = restorer


def _placement(config: PoolConfig, restorer: SessionRestorer) -> dict[str, Any]:
    """The pool's reset and validation callables for ``OPTIONS["pool"]["reset"]``."""
    if config.reset is False:
        return {"reset": _ping, "reset_on": "checkout"}  # a ping only (system check W001)
    if config.reset == "checkout":
        return {"reset": restorer, "reset_on": "checkout"}
    return {
        "reset": restorer,
        "reset_on": "checkin",
        "alive": socket_alive,
        "check": _ping,
        "validation_window": config.validation_window,
    }


class DatabaseWrapper(MySQLDatabaseWrapper):
    """Django's MySQL ``DatabaseWrapper`` whose connections come from a pool."""

    creation_class = DatabaseCreation
    features_class = DatabaseFeatures

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool_of_connection: _DjangoPool | None = None
        #: A new object per checkout: cursors of an earlier checkout compare theirs with it.
        self.checkout_token: object | None = None
        self._pool_reused = False
        self._pending_setup: list[str] | None = None
        self._setup_broken = False
        _wrappers.add(self)

    # -- the pool ---------------------------------------------------------

    @property
    def pool(self) -> _DjangoPool | None:
        """This alias's process-wide pool, built on first use; ``None`` without one.

        :raises ImproperlyConfigured: invalid ``OPTIONS["pool"]`` or
            ``CONN_MAX_AGE != 0``.
        """
        if self.alias == NO_DB_ALIAS:
            return None
        pool = registry.get_pool(self.alias)
        if pool is not None:
            return pool  # type: ignore[return-value]
        config = parse_pool_config(self.alias, self.settings_dict)
        if config is None:
            return None
        params = self.get_connection_params()  # sets self.isolation_level
        restorer = SessionRestorer(
            params, isolation_level=self.isolation_level, autocommit=self.settings_dict["AUTOCOMMIT"]
        )
        alias = self.alias  # the pool must not keep this thread's wrapper alive
        pool = _DjangoPool(
            lambda timeout: _open(alias, params, timeout),
            **_placement(config, restorer),
            shared=_shared,
            close=_close,
            detach=detach_after_fork,
            interrupt=interrupt,
            name=self.alias,
            min_size=config.min_size,
            max_size=config.max_size,
            timeout=config.timeout,
            max_waiting=config.max_waiting,
            max_lifetime=config.max_lifetime,
            max_idle=config.max_idle,
            leak_timeout=config.leak_timeout,
            config=config,
            restorer=restorer,
        )
        pool.hooks.append(publisher_for(self.alias, self.settings_dict, config))
        return registry.publish_pool(self.alias, pool)  # type: ignore[return-value]

    def close_pool(self) -> None:
        """Close this alias's pool in this process; the next checkout builds a new one."""
        pool = registry.remove_pool(self.alias)
        if pool is not None:
            pool.close()

    def get_connection_params(self) -> dict[str, Any]:
        # Per connection, as the stock backend: validates OPTIONS (a copy() of the
        # wrapper may differ from the pool's) and sets self.isolation_level.
        params: dict[str, Any] = super().get_connection_params()
        _raw, driver = split_options(params)
        return driver

    # -- checkout / checkin -------------------------------------------------

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        self._pending_setup = None
        self._setup_broken = False
        pool = self.pool
        if pool is None:
            self._pool_of_connection = None
            return super().get_new_connection(conn_params)
        conn = pool.getconn(owner=self)
        self._pool_of_connection = pool
        self.checkout_token = object()
        self._pool_reused = pool.was_reused(conn)
        return conn

    def init_connection_state(self) -> None:
        pool = self._pool_of_connection
        # Only connect()'s call right after a checkout finds a restored session;
        # a later call does what the stock backend does.
        reused, self._pool_reused = self._pool_reused, False
        if pool is None or not reused:
            super().init_connection_state()
            return
        BaseDatabaseWrapper.init_connection_state(self)
        # The pool's reset restored Django's settings of the wrapper that built
        # the pool; a copy() whose OPTIONS differ sends the difference with its
        # first statement (cursor.py): no round trip of its own.
        if pool.config.reset and self.isolation_level != pool.restorer.isolation_level:
            if self.isolation_level:
                level = f"SET SESSION TRANSACTION ISOLATION LEVEL {self.isolation_level.upper()}"
            else:
                level = f"SET SESSION {'tx_isolation' if self.mysql_is_mariadb else 'transaction_isolation'} = DEFAULT"
            self._pending_setup = [level]

    def create_cursor(self, name: Any = None) -> Any:
        if self._pool_of_connection is None:
            return super().create_cursor(name)
        return SetupCursorWrapper(self.connection.cursor(), self)

    def take_pending_setup(self) -> list[str] | None:
        """Return and forget the session settings still to be sent (see cursor.py)."""
        setup, self._pending_setup = self._pending_setup, None
        return setup

    def setup_failed(self) -> None:
        """The pending session settings failed: close the connection at checkin."""
        self._setup_broken = True

    def flush_pending_setup(self, cursor: Any, *then: str) -> None:
        """Send the pending session settings, then *then*, in one round trip on the raw *cursor*.

        :raises MySQLdb.Error: a statement failed (the connection is then closed at checkin).
        """
        setup = self.take_pending_setup()
        if not setup:
            return
        try:
            run_batch(cursor, [*setup, *then])
        except MySQLdb.Error:
            self.setup_failed()
            raise

    def _set_autocommit(self, autocommit: bool) -> None:
        if not self._pending_setup:
            super()._set_autocommit(autocommit)  # type: ignore[misc]
            return
        # atomic() before any query: one round trip for both.
        with self.wrap_database_errors:
            self.flush_pending_setup(self.connection.cursor(), f"SET autocommit = {int(autocommit)}")

    def _close(self) -> None:
        pool = self._pool_of_connection
        if pool is None or self.connection is None:
            return super()._close()  # type: ignore[misc, no-any-return]
        conn = self.connection
        self._pool_of_connection = None
        self.connection = None
        self.checkout_token = None  # cursors of this checkout fail from now on
        self._pending_setup = None
        broken = self._setup_broken or self._roll_back_at_checkin(pool, conn)
        try:
            with self.wrap_database_errors:
                pool.putconn(conn, broken=broken, owner=self)
        except ValueError:  # the pool reclaimed it (its owner looked gone): not ours any more
            logger.warning("pool %r: a connection returned after the pool had reclaimed it", self.alias)
        return None

    def _roll_back_at_checkin(self, pool: _DjangoPool, conn: Any) -> bool:
        """Roll back an open transaction now; return whether *conn* is broken.

        Also before a reset: ``COM_RESET_CONNECTION`` leaves an XA transaction
        (``XA START`` ... ``XA PREPARE``) attached to the session, where the
        next checkout would meet it; ``ROLLBACK`` fails for one (error 1399)
        and the connection is closed instead, as the stock backend's
        ``close()`` would (a prepared one stays recoverable, ``XA RECOVER``).
        """
        if not pool.resets_on_checkin and self.errors_occurred and not _is_usable(conn):
            return True  # (with a reset at checkin, the reset is the check)
        in_transaction = _in_transaction(conn)
        if in_transaction is False:
            return False
        try:
            conn.rollback()  # so that no row lock is held while the connection is idle
        except MySQLdb.Error:
            return True
        if in_transaction:
            pool.count("returns_rolled_back")
            logger.warning("pool %r: rolled back a transaction left open at checkin", self.alias)
        return False

    def is_usable(self) -> bool:
        if self.connection is None:  # _close() handed the connection back to the pool
            return False
        return bool(super().is_usable())

    def close_if_health_check_failed(self) -> None:
        if self._pool_of_connection is not None:
            return  # a checkout is health-checked by its reset
        super().close_if_health_check_failed()


def _is_usable(conn: Any) -> bool:
    try:
        conn.ping()
    except MySQLdb.Error:
        return False
    return True


def _in_transaction(conn: Any) -> bool | None:
    """Whether *conn* has an open transaction (``None``: the client library cannot tell).

    Read from the status flags of the server's last reply
    (``SERVER_STATUS_IN_TRANS``) through MariaDB Connector/C, without a round
    trip; with MySQL's libmysqlclient it is unknown and the caller rolls back.
    """
    status = native_client().server_status(conn)
    if status is None:
        return None
    return bool(status & SERVER_STATUS_IN_TRANS)


#: Every pooled wrapper of this process (of every thread), for the fork hook.
_wrappers: weakref.WeakSet[DatabaseWrapper] = weakref.WeakSet()


def _forget_wrappers_after_fork() -> None:
    """In a forked child: wrappers holding an inherited (now detached) connection
    drop it, so their next query checks out of the child's own pool."""
    for wrapper in list(_wrappers):
        if wrapper._pool_of_connection is not None:
            wrapper._pool_of_connection = None
            wrapper.connection = None


os.register_at_fork(after_in_child=_forget_wrappers_after_fork)
