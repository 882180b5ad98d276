"""OPTIONS["pool"] parsing: coercion, defaults, and one clear message per mistake."""

from __future__ import annotations

from typing import Any

import environ
import pytest
from django.core.exceptions import ImproperlyConfigured

import django_mysql_pooled.environ  # noqa: F401 - registers mysql-pooled://
from django_mysql_pooled.config import PoolConfig, parse_pool_config, split_options


def parse(pool: Any, conn_max_age: Any = 0, **extra_options: Any) -> PoolConfig | None:
    return parse_pool_config("app", {"OPTIONS": {"pool": pool, **extra_options}, "CONN_MAX_AGE": conn_max_age})


@pytest.mark.parametrize("pool", [None, False, "false", "0", "off"])
def test_pool_off(pool: Any) -> None:
    assert parse(pool) is None


@pytest.mark.parametrize("pool", [True, "true", "1", {}, "on"])
def test_pool_defaults(pool: Any) -> None:
    assert parse(pool) == PoolConfig()
    assert PoolConfig().as_dict()["max_size"] == 10


def test_strings_are_coerced() -> None:
    config = parse(
        {
            "min_size": "2",
            "max_size": "20",
            "timeout": "1.5",
            "max_waiting": "3",
            "max_lifetime": "60",
            "max_idle": "5",
            "reset": "false",
            "leak_timeout": "2.5",
        }
    )
    assert config == PoolConfig(2, 20, 1.5, 3, 60.0, 5.0, False, 2.5)


@pytest.mark.parametrize(("value", "expected"), [("checkin", True), ("CHECKOUT", "checkout"), ("off", False)])
def test_reset_placements(value: str, expected: object) -> None:
    config = parse({"reset": value, "validation_window": "0"})
    assert config is not None and (config.reset, config.validation_window) == (expected, 0.0)


@pytest.mark.parametrize("value", [None, "none", ""])
def test_leak_timeout_none(value: Any) -> None:
    config = parse({"leak_timeout": value})
    assert config is not None and config.leak_timeout is None


@pytest.mark.parametrize(
    ("pool", "message"),
    [
        ({"max_sise": 3}, "unknown key 'max_sise'; allowed keys: credentials, host_backoff, host_backoff_max, hosts"),
        ({"max_size": "ten"}, "['max_size'] = 'ten' is invalid: it must be an integer >= 1"),
        ({"max_size": 2.5}, "['max_size'] = 2.5 is invalid: it must be an integer >= 1"),
        ({"max_size": True}, "['max_size'] = True is invalid"),
        ({"max_size": 0}, "['max_size'] = 0 is invalid: it must be an integer >= 1"),
        ({"min_size": -1}, "['min_size'] = -1 is invalid"),
        ({"timeout": -0.5}, "['timeout'] = -0.5 is invalid: it must be a number of seconds >= 0"),
        ({"timeout": "nan"}, "['timeout'] = 'nan' is invalid"),
        ({"timeout": [1]}, "['timeout'] = [1] is invalid"),
        ({"reset": "maybe"}, "['reset'] = 'maybe' is invalid: it must be True (reset at checkin), 'checkout' or False"),
        ({"reset": 2}, "['reset'] = 2 is invalid"),
        ({"leak_timeout": 0}, "['leak_timeout'] = 0 is invalid: it must be None or a number of seconds > 0"),
        ({"validation_window": "-1"}, "['validation_window'] = '-1' is invalid: it must be a number of seconds >= 0"),
        ({"min_size": 5, "max_size": 2}, "min_size=5 is larger than max_size=2"),
        ("sometimes", "['pool'] = 'sometimes' is invalid: use True, False or a dict"),
        (42, "['pool'] = 42 is invalid"),
    ],
)
def test_invalid_options(pool: Any, message: str) -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse(pool)
    assert message in str(excinfo.value)
    assert "DATABASES['app']" in str(excinfo.value)


@pytest.mark.parametrize("conn_max_age", [None, 60])
def test_conn_max_age_must_be_zero(conn_max_age: Any) -> None:
    with pytest.raises(
        ImproperlyConfigured, match=r"\['CONN_MAX_AGE'\] = .* cannot be combined with OPTIONS\['pool'\]"
    ):
        parse(True, conn_max_age=conn_max_age)


def test_flat_url_keys_are_folded_into_the_pool() -> None:
    raw, driver = split_options({"pool": "true", "pool_max_size": 20, "charset": "utf8mb4"})
    assert raw == {"max_size": 20}
    assert driver == {"charset": "utf8mb4"}
    raw, _ = split_options({"pool": {"min_size": 1}, "pool_max_size": 20})
    assert raw == {"min_size": 1, "max_size": 20}
    raw, _ = split_options({"pool": "bogus", "pool_max_size": 20})
    assert raw == "bogus"


def test_database_url_scheme() -> None:
    url = "mysql-pooled://app:s%40cret@db.example:3307/shop?pool=true&pool_max_size=20&pool_timeout=2.5&charset=utf8mb4"
    config = environ.Env.db_url_config(url)
    assert config["ENGINE"] == "django_mysql_pooled"
    assert (config["NAME"], config["USER"], config["PASSWORD"], config["PORT"]) == ("shop", "app", "s@cret", 3307)
    pool = parse_pool_config("default", {**config, "CONN_MAX_AGE": 0})
    assert pool == PoolConfig(max_size=20, timeout=2.5)
    _, driver = split_options(config["OPTIONS"])
    assert driver == {"charset": "utf8mb4"}


def test_invalid_options_fail_before_any_connection(pooled: Any) -> None:
    db = pooled({"max_size": "lots"})
    with pytest.raises(ImproperlyConfigured, match="'lots'"):
        db.ensure_connection()
    assert db.connection is None
    from django_mysql_pooled.pool.registry import get_pool

    assert get_pool(db.alias) is None
