"""Fixtures shared by the tests: wrappers built from the test database's settings."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.mysql.base import DatabaseWrapper as StockWrapper

from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper
from tests.server import admin_connect

_counter = itertools.count()

WrapperFactory = Callable[..., BaseDatabaseWrapper]


class DrainingWrapper(PooledWrapper):
    """The pooled wrapper, whose ``close()`` also waits for the return workers to reset the connection.

    The pool resets a returned connection on a worker thread; tests that look
    at the pool's statistics or the server right after ``close()`` would race
    it. Tests of the asynchronous return itself use ``pooled(drain=False)``.
    """

    def _close(self) -> None:
        pool = self._pool_of_connection
        super()._close()
        if pool is not None:
            assert pool.drain(), "the return workers did not finish within 30 s"


def _settings(**overrides: Any) -> dict[str, Any]:
    base = copy.deepcopy(connections["default"].settings_dict)
    options = overrides.pop("OPTIONS", None)
    base.update(overrides)
    if options is not None:
        base["OPTIONS"] = options
    return base


@pytest.fixture
def pooled(transactional_db: None, django_db_blocker: Any) -> Iterator[WrapperFactory]:
    """Build pooled wrappers with their own alias (and pool); all closed afterwards."""
    made: list[PooledWrapper] = []

    def make(pool: Any = True, alias: str | None = None, drain: bool = True, **overrides: Any) -> PooledWrapper:
        options = overrides.pop("OPTIONS", {})
        options = {**options, "pool": pool}
        kind = DrainingWrapper if drain else PooledWrapper
        wrapper = kind(_settings(OPTIONS=options, **overrides), alias or f"pooled{next(_counter)}")
        made.append(wrapper)
        return wrapper

    with django_db_blocker.unblock():
        yield make
        for wrapper in made:
            wrapper.close()
            wrapper.close_pool()


@pytest.fixture
def stock(transactional_db: None, django_db_blocker: Any) -> Iterator[WrapperFactory]:
    """Build stock ``django.db.backends.mysql`` wrappers (``CONN_MAX_AGE=None``)."""
    made: list[StockWrapper] = []

    def make(**overrides: Any) -> StockWrapper:
        overrides.setdefault("CONN_MAX_AGE", None)
        overrides.setdefault("OPTIONS", {})
        wrapper = StockWrapper(_settings(ENGINE="django.db.backends.mysql", **overrides), f"stock{next(_counter)}")
        made.append(wrapper)
        return wrapper

    with django_db_blocker.unblock():
        yield make
        for wrapper in made:
            wrapper.close()


@pytest.fixture
def admin(transactional_db: None) -> Iterator[Any]:
    """A plain MySQLdb connection (no pool, autocommit) for server-side checks."""
    conn: Any = admin_connect(connections["default"].settings_dict)
    conn.autocommit(True)
    yield conn
    conn.close()
