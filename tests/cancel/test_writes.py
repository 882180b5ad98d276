"""No ``QueryCancelled`` for a write the server completed; a kill inside ``atomic()`` forces
a rollback (issue 12, item 4)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel.scope import cancel_scope
from tests.cancel.helpers import slow, stat, wait_until
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _pause_after_ok(sent: Callable[[], bool]) -> Callable[..., Any]:
    """An execute wrapper (inside the scope's) that holds the statement's result, after the
    server's OK, until the kill was sent: the deadline fires between OK and "done"."""

    def pause(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        wait_until(sent, 20, "the watchdog never sent its kill")
        time.sleep(0.2)
        return result

    return pause


def test_write_completed_before_a_late_kill_returns_its_result() -> None:
    item = Item.objects.create(name="a", value=0)
    kills, late = stat(connection, "kills_sent"), stat(connection, "kills_late")
    pause = _pause_after_ok(lambda: stat(connection, "kills_sent") > kills)
    with cancel_scope(connection, timeout=0.3), connection.execute_wrapper(pause):  # the scope's wrapper first
        updated = Item.objects.filter(pk=item.pk).update(value=1)
    assert updated == 1  # returned, not raised: a retry would apply it twice
    assert Item.objects.get(pk=item.pk).value == 1
    assert stat(connection, "kills_late") == late + 1


def test_read_returned_after_a_late_kill_still_raises() -> None:
    Item.objects.create(name="a")
    kills = stat(connection, "kills_sent")
    pause = _pause_after_ok(lambda: stat(connection, "kills_sent") > kills)
    with pytest.raises(QueryCancelled), cancel_scope(connection, timeout=0.3), connection.execute_wrapper(pause):
        Item.objects.count()


def test_killed_statement_marks_the_atomic_block_for_rollback() -> None:
    """Django marks the block itself only around update() and a few others; a raw write, or
    any other statement, killed inside atomic() must not let the block commit."""
    table = connection.ops.quote_name(Item._meta.db_table)
    with transaction.atomic():
        Item.objects.create(name="in-block")
        with pytest.raises(QueryCancelled), cancel_scope(connection, timeout=0.3), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET value = 2 WHERE SLEEP(5) = 0")
        assert connection.needs_rollback
        with pytest.raises(TransactionManagementError):
            Item.objects.count()
    assert not Item.objects.exists()


def test_savepoint_around_the_cancellable_call_recovers() -> None:
    with transaction.atomic():
        Item.objects.create(name="kept")
        with pytest.raises(QueryCancelled), transaction.atomic():
            slow(5).cancellable(timeout=0.3).update(value=2)
        assert not connection.needs_rollback
        Item.objects.create(name="after")
    assert sorted(Item.objects.values_list("name", flat=True)) == ["after", "kept"]
