"""``ENGINE: "django_mysql_pooled"``: Django's MySQL backend with a connection pool.

Without ``OPTIONS["pool"]`` it behaves exactly like
``django.db.backends.mysql``. With it, ``get_new_connection()`` checks a
connection out of the alias's process-wide pool (reset with
``COM_RESET_CONNECTION``) and ``_close()`` returns it, as Django's PostgreSQL
backend does with psycopg_pool (Django >= 5.1).
"""

from __future__ import annotations

import logging
import operator
from typing import Any

import MySQLdb
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError
from django.db.backends.base.base import NO_DB_ALIAS, BaseDatabaseWrapper
from django.db.backends.mysql.base import DatabaseWrapper as MySQLDatabaseWrapper

from django_mysql_pooled import identity
from django_mysql_pooled.addresses import parse_hosts, split_label
from django_mysql_pooled.cancel.killers import killer_keeper
from django_mysql_pooled.client import DatabaseClient
from django_mysql_pooled.config import parse_pool_config, split_options
from django_mysql_pooled.creation import DatabaseCreation
from django_mysql_pooled.features import DatabaseFeatures
from django_mysql_pooled.monitoring.publisher import publisher_for
from django_mysql_pooled.pool import registry
from django_mysql_pooled.session import fork
from django_mysql_pooled.session.checkin import roll_back_at_checkin
from django_mysql_pooled.session.deferred_setup import SetupCursorWrapper, run_batch
from django_mysql_pooled.session.factory import DjangoPool, build_pool, params_key

__all__ = ["DatabaseWrapper"]

logger = logging.getLogger(__name__)

_DEFAULT_LEVEL = object()  # OPTIONS without "isolation_level"
# What get_connection_params() depends on (OPTIONS compared by identity first, as a tuple item).
_SERVER_SETTINGS = operator.itemgetter("OPTIONS", "NAME", "USER", "PASSWORD", "HOST", "PORT")


class DatabaseWrapper(MySQLDatabaseWrapper):
    """Django's MySQL ``DatabaseWrapper`` whose connections come from a pool."""

    client_class = DatabaseClient
    creation_class = DatabaseCreation
    features_class = DatabaseFeatures

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pool_of_connection: DjangoPool | None = None
        #: A new object per checkout: cursors of an earlier checkout compare theirs with it.
        self.checkout_token: object | None = None
        self._pool_reused = False
        self._pending_setup: list[str] | None = None
        self._setup_broken = False
        #: (the settings it depends on: _SERVER_SETTINGS plus OPTIONS' isolation_level;
        #: Django's isolation level; the parameters' key) of the last
        #: get_connection_params() that did the stock backend's work.
        self._params_seen: tuple[tuple[Any, ...], str | None, str] | None = None
        #: The pool get_connection_params() found this wrapper's settings to be
        #: the ones of; taken (and forgotten) by the get_new_connection() after it.
        self._checkout_pool: DjangoPool | None = None
        #: After a checkout of a restored session: its autocommit mode, which
        #: connect()'s set_autocommit() then need not set again.
        self._restored_autocommit: bool | None = None
        fork.track(self)

    # -- the pool ---------------------------------------------------------

    @property
    def pool(self) -> DjangoPool | None:
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
        params = self._driver_params()  # sets self.isolation_level
        pool = build_pool(
            self.alias,  # the pool must not keep this thread's wrapper alive
            params,
            config,
            isolation_level=self.isolation_level,
            autocommit=self.settings_dict["AUTOCOMMIT"],
        )
        pool.hooks.append(publisher_for(self.alias, self.settings_dict, config))
        # Once cancellation has used it, the KILL QUERY connection is kept open
        # (not opened at the first kill, when the server may be full): docs/cancellation.rst.
        # With several hosts, each host's (a query is killed on the host it runs on).
        pool.hooks.append(killer_keeper(params, pool.killer_login, config.hosts))
        return registry.publish_pool(self.alias, pool)  # type: ignore[return-value]

    def close_pool(self) -> None:
        """Close this alias's pool in this process; the next checkout builds a new one."""
        pool = registry.remove_pool(self.alias)
        if pool is not None:
            pool.close()

    def get_connection_params(self) -> dict[str, Any]:
        """The driver's ``connect()`` arguments (without the pool's options); sets ``isolation_level``.

        With a pool built, a checkout does not use them: the stock backend's
        work is repeated only when ``OPTIONS`` (compared by identity, plus its
        ``isolation_level``) or the server settings (``NAME``, ``USER``,
        ``PASSWORD``, ``HOST``, ``PORT``) changed, or when this wrapper's
        parameters are not the pool's (it then connects unpooled, with its
        own); otherwise the pool's are returned (a copy).

        :raises ImproperlyConfigured: an invalid ``isolation_level`` (Django's check).
        """
        key = _SERVER_SETTINGS(self.settings_dict)
        key += (key[0].get("isolation_level", _DEFAULT_LEVEL),)
        seen = self._params_seen
        pool = registry.get_pool(self.alias)  # never one for NO_DB_ALIAS (see pool)
        if pool is not None and seen is not None and seen[0] == key and seen[2] == pool.params_key:  # type: ignore[attr-defined]
            self.isolation_level = seen[1]
            self._checkout_pool = pool  # type: ignore[assignment]
            return dict(pool.restorer.params)  # type: ignore[attr-defined]
        self._checkout_pool = None
        params = self._driver_params()
        self._params_seen = (key, self.isolation_level, params_key(params))
        return params

    def _driver_params(self) -> dict[str, Any]:
        settings = self.settings_dict
        raw, _driver = split_options(settings["OPTIONS"])
        hosts = parse_hosts(self.alias, settings, raw.get("hosts") if isinstance(raw, dict) else None)
        if not hosts:
            params: dict[str, Any] = super().get_connection_params()  # validates OPTIONS
            return split_options(params)[1]
        if parse_pool_config(self.alias, settings) is None:
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}] lists several hosts ({', '.join(hosts)}) without OPTIONS['pool']: "
                "failover between hosts is the pool's; set OPTIONS['pool'] = True (or give one HOST)."
            )
        # Django's own parameters for the first host (its PORT must be one number); the pool
        # connects to each host with these, host and port replaced (session/factory.py).
        host, port = split_label(hosts[0])
        self.settings_dict = {**settings, "HOST": host, "PORT": str(port)}
        try:
            params = super().get_connection_params()
        finally:
            self.settings_dict = settings
        return split_options(params)[1]

    # -- checkout / checkin -------------------------------------------------

    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        self._pending_setup = None
        self._setup_broken = False
        pool, self._checkout_pool = self._checkout_pool, None
        if pool is None:  # not right after get_connection_params() found the pool's settings
            pool = self.pool
            if pool is None or not pool.serves(None if self._params_seen is None else self._params_seen[2]):
                self._pool_of_connection = None
                return super().get_new_connection(conn_params)
        conn = pool.getconn(owner=self)
        self._pool_of_connection = pool
        self.checkout_token = object()
        reused = self._pool_reused = pool.was_reused(conn)
        # A reset session was restored to the pool's autocommit mode (restore.py).
        self._restored_autocommit = pool.restorer.autocommit if reused and pool.config.reset else None
        return conn

    def init_connection_state(self) -> None:
        pool = self._pool_of_connection
        # Only connect()'s calls right after a checkout find a restored session;
        # a later call does what the stock backend does.
        reused, self._pool_reused = self._pool_reused, False
        self._restored_autocommit = None
        if pool is None or not reused:
            if pool is not None and identity.identity_of(self.connection) is None:
                # A new server connection: learn which server it is on (for KILL QUERY)
                # in the first statement it sends anyway, Django's setup below.
                self._pending_setup = [identity.probe_sql(self.connection.get_server_info())]
                identity.mark_pending(self.connection)
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

    def statement_failed(self, exc: BaseException) -> None:
        """A statement failed: with several hosts, an error that takes its host out (a Galera node
        not ready, 1290 on a primary turned read-only...) marks the host down, and the connection
        is closed at checkin (``pool/hosted.py``)."""
        pool = self._pool_of_connection
        if pool is not None and self.connection is not None and pool.connection_failed(self.connection, exc):
            self._setup_broken = True

    def _commit(self) -> None:
        try:
            super()._commit()  # type: ignore[misc]
        except DatabaseError as exc:  # e.g. 1047 from a Galera node that left the cluster
            self.statement_failed(exc.__cause__ or exc)
            raise

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

    def set_autocommit(self, autocommit: bool, force_begin_transaction_with_broken_autocommit: bool = False) -> None:
        # connect()'s call right after the checkout of a restored session: every step of Django's
        # set_autocommit() is then a no-op (no atomic block, connected, health-checked by the reset,
        # the session already in this mode, no commit hooks due), so only its result is kept.
        if (
            autocommit  # (set_autocommit(False) logs a BEGIN in connection.queries with DEBUG)
            and self._restored_autocommit is autocommit
            and not (self.in_atomic_block or self.run_commit_hooks_on_set_autocommit_on)
            and self._pool_of_connection is not None
            and self.connection is not None
        ):
            self._restored_autocommit = None
            self.autocommit = autocommit
            return
        super().set_autocommit(autocommit, force_begin_transaction_with_broken_autocommit)

    def _set_autocommit(self, autocommit: bool) -> None:
        restored, self._restored_autocommit = self._restored_autocommit, None
        if not self._pending_setup:
            if restored is not autocommit:  # (connect()'s call after a checkout: already so)
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
        broken = self._setup_broken or roll_back_at_checkin(pool, conn, errors_occurred=self.errors_occurred)
        try:
            pool.putconn(conn, broken=broken, owner=self)  # a failed reset closes it: never raises for that
        except ValueError:  # the pool reclaimed it (its owner looked gone): not ours any more
            logger.warning("pool %r: a connection returned after the pool had reclaimed it", self.alias)
        return None

    def is_usable(self) -> bool:
        if self.connection is None:  # _close() handed the connection back to the pool
            return False
        return bool(super().is_usable())

    def forget_inherited_connection(self) -> None:
        """In a forked child: drop the connection inherited from the parent (see ``session/fork.py``)."""
        if self._pool_of_connection is not None:
            self._pool_of_connection = None
            self.connection = None

    def close_if_health_check_failed(self) -> None:
        if self._pool_of_connection is not None:
            return  # a checkout is health-checked by its reset
        super().close_if_health_check_failed()
