"""The pool options that go with several hosts, the backend's use of a host list, and review findings.

Parsing the host lists themselves: ``test_addresses.py``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper
from tests.test_addresses import config, from_url, server_settings

# -- the options that go with several hosts --------------------------------------------------


def test_host_options_default() -> None:
    parsed = config(True, HOST="db1,db2")
    assert (parsed.hosts, parsed.policy, parsed.require_primary, parsed.require_synced) == (
        ("db1:3306", "db2:3306"),
        "failover",
        False,
        False,
    )
    assert (parsed.host_backoff, parsed.host_backoff_max) == (1.0, 30.0)
    assert parsed.as_dict()["hosts"] == ("db1:3306", "db2:3306")


@pytest.mark.parametrize(
    ("value", "expected"), [("failover", "failover"), (" Balance ", "balance"), ("BALANCE", "balance")]
)
def test_policy_is_coerced(value: str, expected: str) -> None:
    assert config({"policy": value}).policy == expected


@pytest.mark.parametrize("value", ["roundrobin", "", 1, None, True])
def test_an_unknown_policy_names_the_allowed_ones(value: Any) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        config({"policy": value})
    assert str(raised.value) == (
        f"DATABASES['app']['OPTIONS']['pool']['policy'] = {value!r} is invalid: it must be 'failover' or 'balance'."
    )


@pytest.mark.parametrize("key", ["require_primary", "require_synced"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("true", True), ("1", True), ("Yes", True), ("on", True), (1, True)]
    + [(False, False), ("false", False), ("0", False), ("", False), ("off", False), (0, False)],
)
def test_requirements_are_coerced(key: str, value: Any, expected: bool) -> None:
    assert getattr(config({key: value}), key) is expected


@pytest.mark.parametrize("key", ["require_primary", "require_synced"])
@pytest.mark.parametrize("value", ["maybe", 2, 0.5, None])
def test_a_requirement_that_is_not_a_boolean_is_refused(key: str, value: Any) -> None:
    with pytest.raises(ImproperlyConfigured) as raised:
        config({key: value})
    assert str(raised.value) == (
        f"DATABASES['app']['OPTIONS']['pool'][{key!r}] = {value!r} is invalid: it must be True or False."
    )


@pytest.mark.parametrize("key", ["host_backoff", "host_backoff_max"])
def test_backoffs_are_seconds(key: str) -> None:
    assert getattr(config({key: "0.25"}), key) == 0.25
    assert getattr(config({key: 2}), key) == 2.0
    for bad in ("-1", "nan", "inf", "soon", True):
        with pytest.raises(ImproperlyConfigured) as raised:
            config({key: bad})
        assert str(raised.value) == (
            f"DATABASES['app']['OPTIONS']['pool'][{key!r}] = {bad!r} is invalid: it must be a number of seconds >= 0."
        )


def test_a_host_mistake_is_raised_when_the_pool_options_are_read() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"\['HOST'\] has an empty host in its list"):
        config(True, HOST="db1,,db2")


# -- the backend -----------------------------------------------------------------------------


def wrapper(host: str, port: str = "", options: dict[str, Any] | None = None) -> PooledWrapper:
    settings = copy.deepcopy(connections["default"].settings_dict)
    settings.update(HOST=host, PORT=port, OPTIONS=options or {})
    return PooledWrapper(settings, "hosts_settings")


def test_a_host_list_without_the_pool_is_refused_when_connecting(django_db_blocker: Any) -> None:
    db = wrapper("db1:3306,db2:3307")
    message = (
        "DATABASES['hosts_settings'] lists several hosts (db1:3306, db2:3307) without OPTIONS['pool']: "
        "failover between hosts is the pool's; set OPTIONS['pool'] = True (or give one HOST)."
    )
    with django_db_blocker.unblock(), pytest.raises(ImproperlyConfigured) as raised:
        db.connect()
    assert str(raised.value) == message
    assert db.connection is None
    assert db.pool is None


def test_django_gets_the_first_hosts_parameters() -> None:
    db = wrapper("[fd00::1]:3307,db2", "3308", {"pool": {"max_size": 2}, "connect_timeout": 5})
    params = db.get_connection_params()
    assert (params["host"], params["port"], params["connect_timeout"]) == ("fd00::1", 3307, 5)
    assert "pool" not in params
    assert db.settings_dict["HOST"] == "[fd00::1]:3307,db2"  # restored after the stock backend's work


def test_a_mistake_in_the_host_list_is_raised_before_connecting() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"\['HOST'\] has port '0'"):
        wrapper("db1:0,db2", options={"pool": True}).get_connection_params()


def test_dbshell_and_the_mysqldump_clone_connect_to_the_first_listed_host() -> None:
    db = wrapper("db1:3306,db2:3307", options={"pool": {"max_size": 2}, "charset": "utf8mb4"})
    args, _env = db.client.settings_to_cmd_args_env(db.settings_dict, [])
    assert "--host=db1" in args and "--port=3306" in args, args
    assert not [arg for arg in args if "db2" in arg or "pool" in arg], args
    assert "--default-character-set=utf8mb4" in args
    one = wrapper("db1", "3307", {"pool": True})
    args, _env = one.client.settings_to_cmd_args_env(one.settings_dict, [])
    assert "--host=db1" in args and "--port=3307" in args


# -- review findings (strict xfails) ----------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    reason="HOST-13: django-environ gives a URL whose hosts carry some ports ('h1:1,h2') one PORT, so h2 "
    "silently gets h1's port, not 3306 (libpq's rule the docs cite); refuse such a URL or parse it ourselves",
)
def test_a_url_host_without_its_port_gets_the_default_port() -> None:
    assert config(True, **server_settings(from_url("mysql-pooled://u:p@h1:1,h2/db"))).hosts == ("h1:1", "h2:3306")
