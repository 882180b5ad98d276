from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WrapperFactory


def query(wrapper: Any, sql: str) -> Any:
    with wrapper.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def test_checkout_reuses_the_same_server_connection(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 1})
    first = query(db, "SELECT CONNECTION_ID()")
    db.close()
    second = query(db, "SELECT CONNECTION_ID()")
    db.close()
    assert first == second
    stats = db.pool.get_stats()  # type: ignore[attr-defined]
    assert stats["connections_num"] == 1
    assert stats["requests_num"] == 2
    assert stats["resets_reset_connection"] == 2  # at each checkin


@pytest.mark.django_db
def test_default_alias_is_pooled() -> None:
    from django.db import connection

    assert connection.pool is not None  # type: ignore[attr-defined]
