"""The pool hook that keeps killers ready, in a pool with several hosts (no server needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from django_mysql_pooled.cancel.killer import Killer
from django_mysql_pooled.cancel.killers import all_killers, host_killer, killer_for, killer_keeper

PARAMS = {"host": "db1.invalid", "port": 3306, "user": "app", "password": "secret"}
HOSTS = ("db1.invalid:3306", "db2.invalid:3307", "db3.invalid:3308")


class FakePool:
    closed = False

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    def get_host_stats(self) -> dict[str, dict[str, object]]:
        return {label: {"state": state} for label, state in self.states.items()}


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The killers (``where``) the hook asked to keep ready; nothing is opened."""
    calls: list[str] = []

    def keep_ready(self: Killer, *, if_used: bool = False) -> None:
        assert if_used
        calls.append(self.where)

    monkeypatch.setattr(Killer, "keep_ready", keep_ready)
    yield calls
    for killer in all_killers():
        if killer.where in HOSTS:
            killer.close()


def test_the_first_hosts_killer_is_the_alias_killer() -> None:
    assert host_killer(PARAMS, ("db1.invalid", 3306)) is killer_for(PARAMS)
    assert host_killer(PARAMS, ("db2.invalid", 3307)).where == "db2.invalid:3307"


def test_each_host_killer_is_kept_ready_while_its_host_is_up(kept: list[str]) -> None:
    keeper = killer_keeper(PARAMS, None, HOSTS)
    keeper(FakePool(dict(zip(HOSTS, ("up", "up", "down"), strict=True))))
    assert kept == ["db1.invalid:3306", "db2.invalid:3307"]
    kept.clear()
    keeper(FakePool(dict(zip(HOSTS, ("probing", "up", "up"), strict=True))))
    assert kept == ["db2.invalid:3307", "db3.invalid:3308"]


def test_one_server_keeps_its_one_killer(kept: list[str]) -> None:
    pool: Any = FakePool({})
    pool.get_host_stats = None  # never asked with one server
    killer_keeper(PARAMS)(pool)
    assert kept == ["db1.invalid:3306"]
