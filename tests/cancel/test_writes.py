"""No ``QueryCancelled`` for a write the server completed; a kill inside ``atomic()`` forces
a rollback (issue 12, item 4)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel.scope import cancel_scope
from tests.cancel.helpers import pause_after_ok, slow, stat
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def test_write_completed_before_a_late_kill_returns_its_result() -> None:
    item = Item.objects.create(name="a", value=0)
    kills, late = stat(connection, "kills_sent"), stat(connection, "kills_late")
    pause = pause_after_ok(lambda: stat(connection, "kills_sent") > kills)
    with cancel_scope(connection, timeout=0.3), connection.execute_wrapper(pause):  # the scope's wrapper first
        updated = Item.objects.filter(pk=item.pk).update(value=1)
    assert updated == 1  # returned, not raised: a retry would apply it twice
    assert Item.objects.get(pk=item.pk).value == 1
    assert stat(connection, "kills_late") == late + 1


def test_read_returned_after_a_late_kill_still_raises() -> None:
    Item.objects.create(name="a")
    kills = stat(connection, "kills_sent")
    pause = pause_after_ok(lambda: stat(connection, "kills_sent") > kills)
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
