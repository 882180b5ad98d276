"""Parse and validate ``OPTIONS["pool"]`` in one place.

Values may arrive as strings (a ``DATABASE_URL`` query string through
django-environ), so they are coerced; anything invalid raises
:class:`~django.core.exceptions.ImproperlyConfigured` naming the alias, the
key, the value and what is allowed, before any connection is opened.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from django_mysql_pooled.addresses import as_policy, parse_hosts

__all__ = ["POOL_URL_PREFIX", "PSYCOPG_POOL_ONLY", "Credentials", "PoolConfig", "parse_pool_config", "split_options"]

#: ``OPTIONS["pool"]["credentials"]``: returns ``{"user": ..., "password": ...}``.
Credentials = Callable[[], Mapping[str, Any]]

#: Prefix of the flat ``OPTIONS`` keys a ``DATABASE_URL`` query string yields,
#: e.g. ``?pool_max_size=20`` -> ``OPTIONS["pool_max_size"] = "20"``.
POOL_URL_PREFIX = "pool_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """The validated pool options of one alias (durations in seconds)."""

    min_size: int = 0
    max_size: int = 10
    timeout: float = 30.0
    max_waiting: int = 0
    max_lifetime: float = 3600.0
    max_idle: float = 600.0
    #: ``True`` (reset at checkin), ``"checkout"`` (reset at checkout) or ``False`` (ping only).
    reset: bool | str = True
    leak_timeout: float | None = None
    #: Seconds after its checkin during which a connection is handed out on a
    #: zero-round-trip socket check; older ones are pinged (0: ping every checkout).
    validation_window: float = 0.5
    #: Threads that reset returned connections, so that the returning thread
    #: goes on at once (psycopg_pool's name); 0: the returning thread resets.
    num_workers: int = 2
    #: Called for every new connection and ``change_user``: ``{"user": ..., "password": ...}``.
    #: Never in a repr (a ``functools.partial`` shows its arguments), a snapshot or a message.
    credentials: Credentials | None = dataclasses.field(default=None, repr=False)
    #: Several servers (``"host:port"``, in order) from ``HOST`` or ``hosts`` (addresses.py); ``()``: one.
    hosts: tuple[str, ...] = ()
    #: With several hosts: ``"failover"`` or ``"balance"`` (pool/hosts.py).
    policy: str = "failover"
    #: Skip a server with ``@@read_only=1``; a statement refused with 1290 closes its connection.
    require_primary: bool = False
    #: Galera: skip a node whose ``wsrep_local_state`` is not 4 (Synced) when connecting.
    require_synced: bool = False
    #: Seconds a failed host stays down (doubling per failure up to ``host_backoff_max``).
    host_backoff: float = 1.0
    host_backoff_max: float = 30.0

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain ``dict`` (snapshots, docs); ``credentials`` only says whether a
        provider is set, never the provider (its repr may carry arguments) or a result."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values["credentials"] = self.credentials is not None
        return values


_FIELDS = {f.name: f for f in dataclasses.fields(PoolConfig)}
_INTS = {"min_size", "max_size", "max_waiting", "num_workers"}
_BOOLS = {"require_primary", "require_synced"}
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")

#: psycopg_pool ``ConnectionPool`` parameters (what Django's PostgreSQL pool
#: passes on) that have no equivalent here: why, and what to use instead.
#: ``min_size``, ``max_size``, ``timeout``, ``max_waiting``, ``max_lifetime``
#: and ``max_idle`` mean the same here; ``reset`` is a different option.
PSYCOPG_POOL_ONLY: dict[str, str] = {
    "conninfo": "connection parameters come from DATABASES (NAME, HOST, PORT, USER, PASSWORD, "
    "OPTIONS); set them there, or use a mysql-pooled:// DATABASE_URL",
    "kwargs": "driver options go in OPTIONS beside 'pool' (passed to MySQLdb.connect()); "
    "for a password that changes, use OPTIONS['pool']['credentials']",
    "connection_class": "connections are always mysqlclient's MySQLdb.Connection; subclass "
    "django_mysql_pooled.base.DatabaseWrapper to change what Django does with them",
    "open": "the pool opens at its first checkout (Django's PostgreSQL backend passes open=False "
    "too); to open it earlier, call connections[alias].pool.open() at startup",
    "configure": "use OPTIONS['init_command'] (run on every new connection and again after every reset) "
    "or Django's connection_created signal (sent at every checkout)",
    "check": "every checkout is already validated (a socket check when the connection came back "
    "within validation_window seconds, else a ping); set validation_window=0 to ping at every checkout",
    "name": "each pool is named after its DATABASES alias (logs, thread names, poolstats, the "
    "Prometheus 'alias' label); remove the key",
    "close_returns": "Django's close() always returns the connection to the pool here; remove the key",
    "reconnect_timeout": "the pool never gives up: it retries refilling min_size with a backoff of up "
    "to 10 seconds, and a checkout fails within 'timeout' with the server's error; remove the key",
    "reconnect_failed": "failed connection attempts are counted in the connections_errors statistic "
    "(poolstats, Prometheus) and logged; alert on that instead",
}


def _fail(alias: str, key: str, value: object, allowed: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"DATABASES[{alias!r}]['OPTIONS']['pool'][{key!r}] = {value!r} is invalid: it must be {allowed}."
    )


def _as_bool(alias: str, key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail(alias, key, value, "True or False")


def _as_number(alias: str, key: str, value: object, *, integer: bool) -> float:
    allowed = ("an integer >= 1" if key == "max_size" else "an integer >= 0") if integer else "a number of seconds >= 0"
    if isinstance(value, bool):
        raise _fail(alias, key, value, allowed)
    number: float
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value) if integer else float(value)
        except ValueError:
            raise _fail(alias, key, value, allowed) from None
    else:
        raise _fail(alias, key, value, allowed)
    if integer and number != int(number):
        raise _fail(alias, key, value, allowed)
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise _fail(alias, key, value, allowed)
    return number


def _as_reset(alias: str, value: object) -> bool | str:
    if callable(value):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool']['reset'] = {value!r} is a callable, psycopg_pool's "
            "meaning (a function run on each returned connection); here 'reset' is True (COM_RESET_CONNECTION "
            "at checkin, which rolls back and restores the session a new connection has), 'checkout' or False. "
            "To run SQL on every session, use OPTIONS['init_command']."
        )
    if isinstance(value, str) and value.strip().lower() in ("checkin", "checkout"):
        return True if value.strip().lower() == "checkin" else "checkout"
    try:
        return _as_bool(alias, "reset", value)
    except ImproperlyConfigured:
        raise _fail(alias, "reset", value, "True (reset at checkin), 'checkout' or False") from None


def _as_credentials(alias: str, value: object) -> Credentials | None:
    """A callable, or the callable a dotted path names; messages never show a value that may be a secret."""
    key = f"DATABASES[{alias!r}]['OPTIONS']['pool']['credentials']"
    fix = "set it to a function returning {'user': ..., 'password': ...}, or to its dotted path"
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str):
        path = value.strip()
        if not _DOTTED.fullmatch(path):
            raise ImproperlyConfigured(
                f"{key} is a string that is not a dotted path (the value is not shown: it may be a "
                f"secret); {fix}, e.g. 'myproject.db.rds_credentials'."
            )
        try:
            value = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"{key} = {path!r} cannot be imported ({exc}); {fix}.") from None
    if not callable(value):
        raise ImproperlyConfigured(
            f"{key} is a {type(value).__name__}, not a callable (the value is not shown: it may be a secret); {fix}."
        )
    return value


def _coerce(alias: str, key: str, value: object) -> object:
    if key == "reset":
        return _as_reset(alias, value)
    if key == "credentials":
        return _as_credentials(alias, value)
    if key == "leak_timeout":
        if value is None or (isinstance(value, str) and value.lower() in ("", "none")):
            return None
        seconds = _as_number(alias, key, value, integer=False)
        if seconds == 0:
            raise _fail(alias, key, value, "None or a number of seconds > 0")
        return seconds
    if key in _INTS:
        return int(_as_number(alias, key, value, integer=True))
    if key in _BOOLS:
        return _as_bool(alias, key, value)
    if key == "policy":
        return as_policy(alias, value)
    return float(_as_number(alias, key, value, integer=False))


def split_options(options: Mapping[str, Any]) -> tuple[object, dict[str, Any]]:
    """Split ``OPTIONS`` into the raw pool setting and the driver options.

    The raw pool setting is ``OPTIONS["pool"]`` merged with the flat
    ``pool_<key>`` entries a ``DATABASE_URL`` query string produces; the
    driver options are everything else, passed to ``MySQLdb.connect()``
    exactly as the stock backend passes them.
    """
    driver = {k: v for k, v in options.items() if k != "pool" and not k.startswith(POOL_URL_PREFIX)}
    flat = {k[len(POOL_URL_PREFIX) :]: v for k, v in options.items() if k.startswith(POOL_URL_PREFIX)}
    raw: object = options.get("pool")
    if flat:
        base: dict[str, Any] = {}
        if isinstance(raw, Mapping):
            base.update(raw)
        elif raw is not None and raw is not True and not (isinstance(raw, str) and raw.lower() in _TRUE):
            return raw, driver
        base.update(flat)
        raw = base
    return raw, driver


def parse_pool_config(alias: str, settings_dict: Mapping[str, Any]) -> PoolConfig | None:
    """Return the alias's :class:`PoolConfig`, or ``None`` when pooling is off.

    :param alias: the ``DATABASES`` key, used in error messages.
    :param settings_dict: the alias's settings (``OPTIONS``, ``CONN_MAX_AGE``).
    :raises ImproperlyConfigured: unknown key, wrong type, negative value,
        ``min_size > max_size``, ``max_size == 0`` or ``CONN_MAX_AGE != 0``.
    """
    raw = _as_mapping(alias, split_options(settings_dict.get("OPTIONS") or {})[0])
    if raw is None:
        return None
    psycopg_only = sorted(set(raw) & set(PSYCOPG_POOL_ONLY))
    if psycopg_only:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'][{psycopg_only[0]!r}] is a psycopg_pool option (Django's "
            f"PostgreSQL pool) that does not apply here: {PSYCOPG_POOL_ONLY[psycopg_only[0]]}."
        )
    if "max_size" in raw and raw["max_size"] is None:
        raw = _max_size_none(alias, raw)
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] has unknown key {unknown[0]!r}; "
            f"allowed keys: {', '.join(sorted(_FIELDS))}."
        )
    values = {key: _coerce(alias, key, value) for key, value in raw.items() if key != "hosts"}
    values["hosts"] = parse_hosts(alias, settings_dict, raw.get("hosts"))
    config = PoolConfig(**values)  # type: ignore[arg-type]
    _check_sizes(alias, config, raw)
    conn_max_age = settings_dict.get("CONN_MAX_AGE", 0)
    if conn_max_age != 0:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['CONN_MAX_AGE'] = {conn_max_age!r} cannot be combined "
            "with OPTIONS['pool']: the pool owns connection lifetime. Set CONN_MAX_AGE "
            "to 0 and use the pool's max_lifetime / max_idle instead."
        )
    return config


def _max_size_none(alias: str, raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """psycopg_pool's ``max_size=None``: as many as ``min_size``."""
    min_size = raw.get("min_size", PoolConfig.min_size)
    if min_size in (None, 0, "0", ""):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool']['max_size'] = None means 'equal to min_size' "
            f"(as in psycopg_pool), and min_size is {min_size!r}: set max_size to an integer >= 1."
        )
    return {**raw, "max_size": min_size}


def _as_mapping(alias: str, raw: object) -> Mapping[str, Any] | None:
    """``OPTIONS["pool"]`` as a mapping of options, ``None`` when pooling is off."""
    if raw is None or raw is False:
        return None
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in _FALSE:
            return None
        if lowered not in _TRUE:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['OPTIONS']['pool'] = {raw!r} is invalid: "
                "use True, False or a dict of pool options."
            )
        return {}
    if raw is True:
        return {}
    if not isinstance(raw, Mapping):
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool'] = {raw!r} is invalid: use True, False or a dict of pool options."
        )
    return raw


def _check_sizes(alias: str, config: PoolConfig, raw: Mapping[str, Any]) -> None:
    if config.max_size < 1:
        raise _fail(alias, "max_size", raw.get("max_size"), "an integer >= 1")
    if config.min_size > config.max_size:
        raise ImproperlyConfigured(
            f"DATABASES[{alias!r}]['OPTIONS']['pool']: min_size={config.min_size} is "
            f"larger than max_size={config.max_size}; lower min_size or raise max_size."
        )
