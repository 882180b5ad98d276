"""The system checks: each fires on its configuration, and not otherwise."""

from __future__ import annotations

import copy
from io import StringIO
from typing import Any

import pytest
from django.core.checks import Tags, run_checks
from django.core.management import call_command
from django.db import connections

from django_mysql_pooled.config import PoolConfig
from django_mysql_pooled.monitoring.checks import (
    DOCS,
    check_pool_server,
    check_pool_settings,
    server_messages,
    settings_messages,
)
from django_mysql_pooled.monitoring.snapshots import query_server


def pooled_settings(pool: Any = True, **overrides: Any) -> dict[str, Any]:
    return {"ENGINE": "django_mysql_pooled", "CONN_MAX_AGE": 0, "OPTIONS": {"pool": pool}, **overrides}


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_good_settings_raise_nothing() -> None:
    assert settings_messages("default", pooled_settings()) == []
    assert settings_messages("default", pooled_settings({"max_size": 5, "timeout": 5})) == []
    assert settings_messages("plain", {"ENGINE": "django_mysql_pooled", "OPTIONS": {}}) == []


def test_e001_invalid_options() -> None:
    [message] = settings_messages("default", pooled_settings({"max_size": -1}))
    assert message.id == "django_mysql_pooled.E001"
    assert "['max_size'] = -1 is invalid" in message.msg
    assert message.hint == f"See {DOCS}#django_mysql_pooled-e001"


def test_e002_conn_max_age_with_a_pool() -> None:
    [message] = settings_messages("default", pooled_settings(CONN_MAX_AGE=60))
    assert message.id == "django_mysql_pooled.E002"
    assert "DATABASES['default']['CONN_MAX_AGE'] = 60 cannot be combined" in message.msg
    advice = "Set CONN_MAX_AGE to 0 and use the pool's max_lifetime / max_idle instead."
    assert message.hint == f"{advice} See {DOCS}#django_mysql_pooled-e002"
    assert settings_messages("default", {"ENGINE": "django_mysql_pooled", "CONN_MAX_AGE": 60}) == []


def test_w001_reset_off() -> None:
    assert ids(settings_messages("default", pooled_settings({"reset": False}))) == ["django_mysql_pooled.W001"]


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (0, ["django_mysql_pooled.W004"]),
        ("0", ["django_mysql_pooled.W004"]),
        (121, ["django_mysql_pooled.W005"]),
        (120, []),
        (0.5, []),
    ],
)
def test_w004_w005_timeout(timeout: Any, expected: list[str]) -> None:
    assert ids(settings_messages("default", pooled_settings({"timeout": timeout}))) == expected


def server(**overrides: int) -> dict[str, int]:
    return {"max_connections": 151, "max_user_connections": 0, "wait_timeout": 28800, **overrides}


def test_w002_max_size_above_the_servers_limits() -> None:
    assert server_messages("default", PoolConfig(max_size=151), server()) == []
    [message] = server_messages("default", PoolConfig(max_size=152), server())
    assert message.id == "django_mysql_pooled.W002"
    assert "max_size'] = 152 is larger than the server's max_connections (151)" in message.msg
    [message] = server_messages("default", PoolConfig(max_size=20), server(max_user_connections=10))
    assert "max_user_connections (10)" in message.msg


def test_w003_max_lifetime_not_below_wait_timeout() -> None:
    assert server_messages("default", PoolConfig(max_lifetime=599), server(wait_timeout=600)) == []
    [message] = server_messages("default", PoolConfig(max_lifetime=600), server(wait_timeout=600))
    assert message.id == "django_mysql_pooled.W003"
    assert "not below the server's wait_timeout (600 s)" in message.msg


@pytest.mark.django_db
def test_database_checks_query_the_real_server(monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = connections["default"]
    variables = query_server(wrapper.get_connection_params())
    assert variables["max_connections"] > 0 and variables["wait_timeout"] > 0
    assert run_checks(databases=["default"], tags=[Tags.database]) == []
    assert check_pool_server(databases=None) == []

    options = copy.deepcopy(wrapper.settings_dict["OPTIONS"])
    options["pool"] = {"max_size": variables["max_connections"] + 1, "max_lifetime": variables["wait_timeout"]}
    monkeypatch.setitem(wrapper.settings_dict, "OPTIONS", options)
    found = ids(run_checks(databases=["default"], tags=[Tags.database]))
    assert found == ["django_mysql_pooled.W002", "django_mysql_pooled.W003"]


@pytest.mark.django_db
def test_manage_py_check_is_clean() -> None:
    out = StringIO()
    call_command("check", "--database", "default", stdout=out)
    assert "no issues" in out.getvalue()


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("tests.testapp.subclassed_backend", ["django_mysql_pooled.E001"]),  # ENGINE is not ours; the class is
        ("django.db.backends.mysql", []),  # the stock backend ignores OPTIONS["pool"]: nothing to check
    ],
)
def test_checks_find_backends_that_subclass_ours(
    monkeypatch: pytest.MonkeyPatch, engine: str, expected: list[str]
) -> None:
    from django.conf import settings

    sub = {**copy.deepcopy(connections["default"].settings_dict), "ENGINE": engine}
    sub["OPTIONS"] = {**sub["OPTIONS"], "pool": {"max_size": -1}}
    monkeypatch.setitem(settings.DATABASES, "sub", sub)
    monkeypatch.setitem(connections.settings, "sub", sub)
    assert connections["sub"].settings_dict["ENGINE"] == engine
    try:
        found = [
            m for m in check_pool_settings() if "DATABASES['sub']" in m.msg
        ]  # ours only: Django 6.1 checks query servers
        assert ids(found) == expected
    finally:
        del connections["sub"]
