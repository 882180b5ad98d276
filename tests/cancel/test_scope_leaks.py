"""A scope covers exactly the statements of its own evaluation (issue 12, items 1 and 2)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.db.models import Prefetch

from django_mysql_pooled import QueryCancelled
from tests.cancel.helpers import items
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _recorder(seen: list[str]) -> Callable[..., Any]:
    def record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append(sql)
        return execute(sql, params, many, context)

    return record


def test_unfinished_iterator_leaves_other_statements_alone() -> None:
    for name in "abc":
        Item.objects.create(name=name)
    rows = items.order_by("pk").cancellable(timeout=0.3).iterator(chunk_size=1)
    assert next(rows).name == "a"
    assert connection.execute_wrappers == []  # nothing of the iterator stays installed between rows
    time.sleep(0.5)  # its deadline passes while the caller holds it
    seen: list[str] = []
    with connection.execute_wrapper(_recorder(seen)):
        assert Item.objects.count() == 3  # not QueryCancelled
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            assert cursor.fetchone() == (1,)
    assert len(seen) == 2 and not any("max_statement_time" in sql for sql in seen), seen
    rows.close()


def test_iterator_statements_keep_the_deadline() -> None:
    """Each chunk's prefetch (0.4 s) is the iterator's own: the second one passes 0.6 s."""
    for name in "ab":
        group = Group.objects.create(name=name)
        group.permissions.add(Permission.objects.order_by("pk")[0])
    permissions: Any = Permission.objects.extra(where=["SLEEP(0.4) = 0"])
    groups: Any = Group.objects.order_by("pk").prefetch_related(Prefetch("permissions", queryset=permissions))
    rows = groups.cancellable(timeout=0.6).iterator(chunk_size=1)
    assert next(rows).name == "a"
    with pytest.raises(QueryCancelled) as info:
        next(rows)
    assert info.value.reason == "timeout"
    assert connection.execute_wrappers == []
    # The traceback's frames hold Django's cursor iterator, in a cycle with this frame: left to
    # the garbage collector, it was once finalized in another thread, whose cursor.close() then
    # hit this thread's connection (mysqlclient: "already in use from another thread"; CI).
    del info
    rows.close()
    gc.collect()


def test_iterator_ending_inside_a_user_wrapper_keeps_the_user_wrapper() -> None:
    """Django's execute_wrapper() removes the *last* wrapper on exit, whoever added it."""
    for name in "ab":
        Item.objects.create(name=name)
    rows = items.order_by("pk").cancellable(timeout=5).iterator(chunk_size=1)
    assert next(rows).name == "a"
    seen: list[str] = []
    user = _recorder(seen)
    with connection.execute_wrapper(user):
        assert [item.name for item in rows] == ["b"]  # the iterator ends inside the user's block
        assert connection.execute_wrappers == [user]
        Item.objects.count()
    assert len(seen) == 1 and "COUNT" in seen[0], seen
    assert connection.execute_wrappers == []


def test_scope_removes_its_own_wrapper_only() -> None:
    """A block scope's wrapper is removed by identity, even when a user's was added after it."""
    from django_mysql_pooled.cancel.scope import cancel_scope

    seen: list[str] = []
    user = _recorder(seen)
    scope = cancel_scope(connection, timeout=5)
    scope.__enter__()
    connection.execute_wrappers.append(user)  # added inside, removed by the user later
    scope.__exit__(None, None, None)
    assert connection.execute_wrappers == [user]
    connection.execute_wrappers.remove(user)
