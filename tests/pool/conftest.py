"""Fixtures of the pool tests: a fake clock and server; fake servers a, b, c and pools over them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from django_mysql_pooled.pool.pool import ConnectionPool
from tests.pool.fake_connections import FakeClock, FakeConnection, FakeFactory, start
from tests.pool.fake_hosts import A, B, C, FakeHosts, quiet_prober


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """``random.random()`` is 0.5: a backoff is exactly its nominal length."""
    monkeypatch.setattr(random, "random", lambda: 0.5)  # what pool/hosts.py draws its jitter from


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def factory(clock: FakeClock) -> Iterator[FakeFactory]:
    """A fake server on the fake clock; no test may leave it with a violation (a connection misused)."""
    fake = FakeFactory(clock)
    yield fake
    assert fake.violations == []


@pytest.fixture
def servers(clock: FakeClock) -> Iterator[FakeHosts]:
    """Fake servers a, b and c (``"a:3306"``...), in that order."""
    fake = FakeHosts([A, B, C], clock)
    yield fake
    assert fake.violations == []


@pytest.fixture
def hosted(servers: FakeHosts, no_jitter: None) -> Iterator[Any]:
    """``hosted(**options)``: an opened pool over a, b, c (prober asleep); all closed afterwards."""
    made: list[ConnectionPool[FakeConnection]] = []

    def build(**options: Any) -> ConnectionPool[FakeConnection]:
        with quiet_prober():
            pool = servers.pool(**options)
            made.append(pool)
            start(pool)
        return pool

    yield build
    for pool in made:
        pool.close()
