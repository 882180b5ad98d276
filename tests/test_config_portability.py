"""OPTIONS["pool"] as a Django PostgreSQL user writes it (psycopg_pool's names), and ``credentials``.

Every parameter of psycopg_pool's ``ConnectionPool`` (3.3) either means the
same here or is refused with why and what to use instead: none is ignored.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_mysql_pooled.config import PSYCOPG_POOL_ONLY, PoolConfig, parse_pool_config

#: ``psycopg_pool.ConnectionPool.__init__``'s parameters (psycopg_pool 3.3.3, ``psycopg_pool/pool.py``).
PSYCOPG_POOL_PARAMETERS = (
    "conninfo",
    "connection_class",
    "kwargs",
    "min_size",
    "max_size",
    "open",
    "configure",
    "check",
    "reset",
    "name",
    "close_returns",
    "timeout",
    "max_waiting",
    "max_lifetime",
    "max_idle",
    "reconnect_timeout",
    "reconnect_failed",
    "num_workers",
)
#: Same name, same meaning, same unit (seconds) here.
SAME_MEANING = {
    "min_size": (2, 2),
    "max_size": (20, 20),
    "timeout": (2.5, 2.5),
    "max_waiting": (5, 5),
    "max_lifetime": (600, 600.0),
    "max_idle": (60, 60.0),
    "num_workers": (3, 3),
}
#: A word of the advice each refused key's message must give.
ADVICE = {
    "conninfo": "DATABASES",
    "kwargs": "OPTIONS",
    "connection_class": "DatabaseWrapper",
    "open": "pool.open()",
    "configure": "init_command",
    "check": "validation_window",
    "name": "alias",
    "close_returns": "close()",
    "reconnect_timeout": "min_size",
    "reconnect_failed": "connections_errors",
}


def parse(pool: Any, **options: Any) -> PoolConfig | None:
    return parse_pool_config("pg", {"OPTIONS": {"pool": pool, **options}, "CONN_MAX_AGE": 0})


def test_every_psycopg_pool_parameter_is_accounted_for() -> None:
    handled = set(SAME_MEANING) | set(PSYCOPG_POOL_ONLY) | {"reset"}
    assert handled == set(PSYCOPG_POOL_PARAMETERS)
    assert set(ADVICE) == set(PSYCOPG_POOL_ONLY)


@pytest.mark.parametrize("key", sorted(SAME_MEANING))
def test_same_meaning(key: str) -> None:
    value, expected = SAME_MEANING[key]
    pool = {key: value, "max_size": 20} if key == "min_size" else {key: value}
    config = parse(pool)
    assert config is not None and getattr(config, key) == expected


def test_a_django_postgresql_pool_setting_works_unchanged() -> None:
    config = parse({"min_size": 2, "max_size": 4, "timeout": 10, "max_lifetime": 1800, "max_idle": 300})
    assert config == PoolConfig(min_size=2, max_size=4, timeout=10.0, max_lifetime=1800.0, max_idle=300.0)


def test_max_size_none_means_min_size_as_in_psycopg_pool() -> None:
    config = parse({"min_size": 3, "max_size": None})
    assert config is not None and (config.min_size, config.max_size) == (3, 3)
    with pytest.raises(ImproperlyConfigured, match=r"\['max_size'\] = None means 'equal to min_size'.*min_size is 0"):
        parse({"max_size": None})


@pytest.mark.parametrize("key", sorted(PSYCOPG_POOL_ONLY))
@pytest.mark.parametrize("flat", [False, True])
def test_psycopg_only_keys_are_refused_with_why_and_what_instead(key: str, flat: bool) -> None:
    value: Any = "x" if key in ("conninfo", "name") else (lambda conn: None)
    with pytest.raises(ImproperlyConfigured) as excinfo:
        if flat:  # through a DATABASE_URL query string: ?pool_<key>=...
            parse(True, **{f"pool_{key}": "1"})
        else:
            parse({key: value})
    message = str(excinfo.value)
    assert f"DATABASES['pg']['OPTIONS']['pool'][{key!r}] is a psycopg_pool option" in message
    assert "does not apply here" in message and ADVICE[key] in message


def test_a_callable_reset_gets_psycopg_meaning_explained() -> None:
    def reset(conn: Any) -> None:
        pass

    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse({"reset": reset})
    message = str(excinfo.value)
    assert "['reset'] = <function" in message and "is a callable, psycopg_pool's meaning" in message
    assert "True (COM_RESET_CONNECTION at checkin" in message and "init_command" in message


# -- credentials -----------------------------------------------------------------------


def rds_credentials() -> dict[str, str]:
    return {"user": "app", "password": "token"}


def test_credentials_callable_and_dotted_path() -> None:
    config = parse({"credentials": rds_credentials})
    assert config is not None and config.credentials is rds_credentials
    config = parse(True, pool_credentials=f"{__name__}.rds_credentials")  # DATABASE_URL: ?pool_credentials=...
    assert config is not None and config.credentials is rds_credentials
    assert parse({"credentials": None}) == PoolConfig()


def test_credentials_never_in_repr_or_as_dict() -> None:
    provider: Any = functools.partial(dict, user="app", password="s3cret-in-a-partial")
    config = parse({"credentials": provider})
    assert config is not None
    assert "s3cret" not in repr(config) and "credentials" not in repr(config)
    assert config.as_dict()["credentials"] is True and "s3cret" not in repr(config.as_dict())
    assert PoolConfig().as_dict()["credentials"] is False


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("hunter2-secret", "is a string that is not a dotted path (the value is not shown: it may be a secret)"),
        ({"user": "app", "password": "hunter2-secret"}, "is a dict, not a callable (the value is not shown"),
        (b"hunter2-secret", "is a bytes, not a callable"),
    ],
)
def test_credentials_mistakes_never_echo_a_secret(value: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse({"credentials": value})
    text = str(excinfo.value)
    assert "DATABASES['pg']['OPTIONS']['pool']['credentials']" in text and message in text
    assert "hunter2" not in text and "or to its dotted path" in text


def test_credentials_path_that_does_not_import() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse({"credentials": "myproject.nowhere.rds_token"})
    text = str(excinfo.value)
    assert "['credentials'] = 'myproject.nowhere.rds_token' cannot be imported" in text
    assert "set it to a function returning {'user': ..., 'password': ...}" in text
