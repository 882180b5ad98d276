"""After a kill or the server's time limit, the next statement is never the one interrupted.

A ``KILL QUERY`` answered just as its statement ended, or MariaDB's
``max_statement_time`` timer firing then, can leave the session's "killed"
flag set after the server cleared it for that statement: the caller's next
statement, never cancelled, failed with 1317 or 1969 (twice in clean-clone CI
runs, once here in about 3,000 statements under CPU load; the stress test in
``test_fork_pickle`` reports it). The hook then runs one ``DO 0`` of its own,
which the pending flag ends instead. These tests count that statement on the
server (``Com_do``): sent after a kill or a passed deadline, never otherwise
(no round trip added to a statement that ended in time).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connection

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel import scope as cancel
from tests.cancel.helpers import pause_after_ok, stat
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


def _com_do() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SHOW SESSION STATUS LIKE 'Com_do'")
        return int(cursor.fetchone()[1])


@pytest.fixture(params=["server_limit", "kill_only"])
def limit(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """With MariaDB's limit sent with the statement, and without it (only ``KILL QUERY`` stops it)."""
    if request.param == "kill_only":
        monkeypatch.setattr(cancel._Hook, "_with_server_limit", lambda self, raw, sql: sql)
    yield request.param


def test_a_statement_stopped_at_its_deadline_is_followed_by_one_statement_of_ours(limit: str) -> None:
    before = _com_do()
    with pytest.raises(QueryCancelled), cancel.cancel_scope(connection, timeout=0.2), connection.cursor() as cursor:
        cursor.execute("SELECT SLEEP(2)")
    assert _com_do() - before == 1
    with connection.cursor() as cursor:  # and the session serves the next statement
        cursor.execute("SELECT SLEEP(0.01)")
        assert cursor.fetchone() == (0,)


def test_a_write_completed_before_its_kill_is_followed_by_one_statement_of_ours(limit: str) -> None:
    """The kill reaches the server after the write's OK (``kills_late``): its flag may be pending."""
    item = Item.objects.create(name="a", value=0)
    kills = stat(connection, "kills_sent")
    pause = pause_after_ok(lambda: stat(connection, "kills_sent") > kills)
    before = _com_do()
    with cancel.cancel_scope(connection, timeout=0.3), connection.execute_wrapper(pause):
        assert Item.objects.filter(pk=item.pk).update(value=1) == 1
    assert _com_do() - before == 1
    assert Item.objects.get(pk=item.pk).value == 1


def test_a_statement_that_ends_in_time_adds_no_round_trip(limit: str) -> None:
    before = _com_do()
    with cancel.cancel_scope(connection, timeout=5), connection.cursor() as cursor:
        cursor.execute("SELECT SLEEP(0.01)")
        assert cursor.fetchone() == (0,)
    assert _com_do() - before == 0
