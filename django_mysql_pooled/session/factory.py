"""Build an alias's pool over mysqlclient: the connect, reset, validation and close callables.

The pool core (:mod:`django_mysql_pooled.pool`) knows nothing of MySQL; this
module gives it what it calls: open a connection with the alias's connection
parameters, reset and restore one (:class:`~.restore.SessionRestorer`), check
one without a round trip (:func:`~.native.socket_alive`) or with a ping, cut a
stalled call off (:func:`~.native.interrupt`), drop one inherited through
``fork()`` (:func:`~.native.detach_after_fork`).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from typing import Any

import MySQLdb

from django_mysql_pooled import identity
from django_mysql_pooled.addresses import split_label
from django_mysql_pooled.config import Credentials, PoolConfig
from django_mysql_pooled.pool.hosts import HostSet
from django_mysql_pooled.pool.pool import ConnectionPool
from django_mysql_pooled.session.credentials import connect_with_credentials, with_credentials
from django_mysql_pooled.session.errors import DRIVER_ERRORS, CredentialsError
from django_mysql_pooled.session.hosts import check_role, connect_within, host_error
from django_mysql_pooled.session.native import detach_after_fork, interrupt, socket_alive
from django_mysql_pooled.session.restore import SessionRestorer
from django_mysql_pooled.session.statements import remember_new_session

__all__ = ["DjangoPool", "build_pool", "open_connection", "params_key"]

logger = logging.getLogger(__name__)


class DjangoPool(ConnectionPool[Any]):
    """The pool plus what the Django side needs to know about its sessions.

    Raises the backend's pool errors (:mod:`django_mysql_pooled.errors`),
    which Django's ``wrap_database_errors`` turns into
    :class:`django.db.OperationalError`.
    """

    errors = DRIVER_ERRORS

    def __init__(self, *args: Any, config: PoolConfig, restorer: SessionRestorer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        #: What every reset restores (Django's isolation level among it).
        self.restorer = restorer
        #: Which connection settings the pool's connections have (see :func:`params_key`).
        self.params_key = params_key(restorer.params)
        #: The KILL QUERY connection's login with rotating credentials (``None`` without).
        self.killer_login = None if config.credentials is None else KillerLogin(self.name, config.credentials)
        self._warned_other_settings = False

    def serves(self, key: str | None) -> bool:
        """Whether a wrapper whose parameters have :func:`params_key` *key* (``None``: not known)
        gets this pool's connections; if not, it connects on its own.

        One pool serves an alias. A wrapper of the alias whose ``NAME``,
        ``USER``, ``HOST``, ``OPTIONS``... differ from the ones the pool was
        built with (a ``connection.copy()`` with other settings) must neither
        get the pool's sessions nor give its own to the pool: it connects
        like the stock backend, unpooled (logged once per pool).
        """
        if key is None or key == self.params_key:
            return True
        if not self._warned_other_settings:
            self._warned_other_settings = True
            logger.warning(
                "database %r: a connection object with other connection settings than the pool's "
                "(NAME, USER, HOST, OPTIONS...) connects without the pool",
                self.name,
            )
        return False


def params_key(params: Mapping[str, Any]) -> str:
    """A key equal for equal ``connect()`` arguments (kept in memory only: it holds the password)."""
    return repr(sorted((key, value) for key, value in params.items() if key != "conv"))


class KillerLogin:
    """``login(params)``: *params* with the provider's user and password, for the killer connection.

    Equal for the same alias and provider, so that a rebuilt pool finds the
    same killer (``cancel/killer.py`` keys killers by it).
    """

    def __init__(self, alias: str, provider: Credentials) -> None:
        self.alias, self.provider = alias, provider

    def __call__(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return with_credentials(self.alias, params, self.provider)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KillerLogin) and other.alias == self.alias and other.provider is self.provider

    def __hash__(self) -> int:
        return hash((self.alias, id(self.provider)))

    def __repr__(self) -> str:
        return f"<KillerLogin {self.alias!r}>"  # never the provider: its repr may carry secrets


def build_pool(
    alias: str, params: dict[str, Any], config: PoolConfig, *, isolation_level: str | None, autocommit: bool
) -> DjangoPool:
    """The pool of *alias*, not opened yet.

    :param params: mysqlclient's ``connect()`` keyword arguments (Django's
        ``get_connection_params()``).
    :param isolation_level: Django's, restored by every reset (``None``: the server's).
    :param autocommit: the alias's ``AUTOCOMMIT``, restored by every reset.
    """
    restorer = SessionRestorer(
        params, isolation_level=isolation_level, autocommit=autocommit, alias=alias, credentials=config.credentials
    )
    credentials = config.credentials
    return DjangoPool(
        lambda timeout: open_connection(alias, params, timeout, credentials=credentials, config=config),
        **_hosting(alias, params, config),
        **_placement(config, restorer),
        shared=_shared,
        close=_close,
        detach=detach_after_fork,
        interrupt=interrupt,
        num_workers=config.num_workers if config.reset is True or config.reset == "checkin" else 0,
        name=alias,
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


def _hosting(alias: str, params: dict[str, Any], config: PoolConfig) -> dict[str, Any]:
    """The pool's ``hosts``, ``connect_host`` and ``host_error`` for an alias with several hosts."""
    if len(config.hosts) < 2:
        return {}

    def connect_host(label: str, timeout: float) -> Any:
        host, port = split_label(label)
        bounded = {**params, "host": host, "port": port}
        if "connect_timeout" in params:  # never longer than this host's share of the deadline
            bounded["connect_timeout"] = max(1, min(int(params["connect_timeout"]), math.ceil(timeout)))
        conn = connect_within(
            lambda: open_connection(alias, bounded, timeout, credentials=config.credentials, config=config, ready=True),
            max(1, math.ceil(timeout)) + 1.0,  # the handshake's connect_timeout, then a second for the queries
            label,
        )
        identity.remember_address(conn, host, port)
        return conn

    return {
        "hosts": HostSet(
            config.hosts, policy=config.policy, backoff=config.host_backoff, backoff_max=config.host_backoff_max
        ),
        "connect_host": connect_host,
        "host_error": functools.partial(host_error, require_primary=config.require_primary),
    }


def open_connection(
    alias: str,
    params: dict[str, Any],
    timeout: float | None,
    *,
    credentials: Credentials | None = None,
    config: PoolConfig | None = None,
    ready: bool = False,
) -> Any:
    """Open a new server connection for the pool (called in any thread).

    :param timeout: seconds left before the checkout's deadline; the
        connect timeout when ``params`` sets none (rounded up, at least 1).
    :param credentials: ``OPTIONS["pool"]["credentials"]``, asked for this login's user and password.
    :param config: the pool's options: ``require_primary`` and ``require_synced`` are checked here.
    :param ready: check with a query that the server serves (several hosts; see ``hosts.check_role``).
    :raises MySQLdb.OperationalError: the driver's error, its message naming
        the alias and the server it tried (bad credentials, unknown database,
        nothing listening, not a MySQL server, too many connections).
    :raises CredentialsError: the credentials provider failed.
    :raises HostRejected: the server is read-only or not a Synced Galera node (see ``config``).
    """
    kwargs = dict(params)
    if timeout is not None and "connect_timeout" not in kwargs:
        kwargs["connect_timeout"] = max(1, math.ceil(timeout))
    try:
        conn: Any = connect_with_credentials(alias, kwargs, credentials)
    except CredentialsError:
        raise
    except MySQLdb.OperationalError as exc:
        where = kwargs.get("unix_socket") or f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 3306)}"
        message = exc.args[1] if len(exc.args) > 1 else str(exc)
        raise type(exc)(exc.args[0], f"{message} (database {alias!r} at {where})") from exc
    # As the stock backend: mysqlclient's bytes encoder is a no-op placeholder.
    if conn.encoders.get(bytes) is bytes:
        conn.encoders.pop(bytes)
    if config is not None:
        _check(conn, kwargs, config, ready=ready)
    remember_new_session(conn)
    return conn


def _check(conn: Any, kwargs: dict[str, Any], config: PoolConfig, *, ready: bool) -> None:
    where = f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 3306)}"
    check_role(
        conn,
        where,
        require_primary=config.require_primary,
        require_synced=config.require_synced,
        require_ready=ready,
    )


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


def _ping(conn: Any) -> str:
    conn.ping()
    return "ping"


def _close(conn: Any) -> None:
    conn.close()


def _shared(wrapper: Any) -> bool:
    return bool(wrapper.allow_thread_sharing)
