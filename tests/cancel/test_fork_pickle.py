"""Fork safety of the killers and locks (issue 12, item 5); pickling (item 6)."""

from __future__ import annotations

import importlib
import pickle
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pytest
from django.core.cache import cache
from django.db import OperationalError, connection

from django_mysql_pooled import CancelToken, QueryCancelled
from django_mysql_pooled.cancel import scope as cancel
from django_mysql_pooled.cancel.killer import Killer
from django_mysql_pooled.cancel.killers import killer_for
from django_mysql_pooled.cancel.queryset import CancellableQuerySet
from tests.cancel.helpers import items, run_in_child, slow, wait_until
from tests.testapp.models import Item

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning"),
]


@pytest.fixture
def client_kill_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server-side limit: only ``KILL QUERY`` can stop the query."""
    monkeypatch.setattr(cancel._Hook, "_with_server_limit", lambda self, raw, sql: sql)


@pytest.fixture
def killer(admin: Any) -> Iterator[Killer]:
    """The default alias's killer, connected."""
    found = killer_for(connection.get_connection_params())
    Item.objects.create(name="a")
    with pytest.raises(QueryCancelled):  # a kill connects it, whenever it is opened
        slow(5).cancellable(timeout=0.2).count()
    wait_until(lambda: found.connection_id is not None, 10, "the killer never connected")
    yield found


def _alive(admin: Any, connection_id: int) -> bool:
    cursor = admin.cursor()
    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (connection_id,))
    return bool(cursor.fetchone()[0])


def test_child_leaves_the_parent_killer_connection_open(admin: Any, killer: Killer, client_kill_only: None) -> None:
    parent_id = killer.connection_id
    assert parent_id is not None

    def child() -> bool:
        killer.close()  # what the child's exit (mysqlclient's dealloc) does too
        try:
            slow(5).cancellable(timeout=0.3).count()
        except QueryCancelled:
            return killer.connection_id not in (None, parent_id)  # the child's own killer connection
        return False

    assert run_in_child(child) == 0
    assert _alive(admin, parent_id)
    assert killer.connection_id == parent_id
    with pytest.raises(QueryCancelled):
        slow(5).cancellable(timeout=0.3).count()
    assert killer.connection_id == parent_id  # the kill went through the same connection


def _cancellation_lock() -> Any:
    """The condition every scope and execution takes (its module moved with issue 12)."""
    try:
        return importlib.import_module("django_mysql_pooled.cancel.execution").lock
    except ImportError:
        return cancel._cond  # type: ignore[attr-defined]


def test_fork_during_a_kill_in_flight_does_not_hang_the_child(killer: Killer, client_kill_only: None) -> None:
    """A thread holds the killer's and the scopes' locks (as a kill being sent does) at fork()."""
    held, release = threading.Event(), threading.Event()
    condition = _cancellation_lock()

    def in_flight() -> None:
        with killer._lock, condition:
            held.set()
            release.wait(30)

    thread = threading.Thread(target=in_flight)
    thread.start()
    held.wait(10)
    try:

        def child() -> bool:
            try:
                slow(3).cancellable(timeout=0.3).count()
            except QueryCancelled as exc:
                return exc.elapsed < 2.5  # killed, not ended by the 3 s SLEEP
            return False

        assert run_in_child(child, timeout=30) == 0
    finally:
        release.set()
        thread.join()


def test_race_stress_in_a_forked_child(tmp_path: Path) -> None:
    """Kills timed around the end of short statements, in a child forked from a process
    whose killer is busy: the statement after each one is never interrupted."""
    connection.ensure_connection()
    report = tmp_path / "child.txt"  # what the child saw, for the assertion message

    def child() -> bool:
        cursor = connection.cursor()
        failures: list[str] = []
        cancelled = 0
        for _ in range(300):
            before = "completed"
            try:
                with cancel.cancel_scope(connection, timeout=random.uniform(0.0005, 0.004)):
                    cursor.execute("SELECT SLEEP(0.002)")
            except QueryCancelled as exc:
                cancelled += 1
                before = f"{exc!r} (from {exc.__cause__!r})"
            try:
                cursor.execute("SELECT SLEEP(0.002)")
                row = cursor.fetchone()
                if row != (0,):
                    failures.append(f"next statement returned {row!r} after the cancellable one {before}")
            except (OperationalError, MySQLdb.OperationalError) as exc:
                failures.append(f"next statement raised {exc!r} after the cancellable one {before}")
        report.write_text(f"cancelled={cancelled} failures={len(failures)} first={failures[:3]}")
        return not failures and cancelled > 0

    code = run_in_child(child, timeout=120)
    assert code == 0, report.read_text() if report.exists() else f"child exit code {code}"


# -- pickling ------------------------------------------------------------------------


def test_cancellable_querysets_pickle() -> None:
    Item.objects.create(name="a", value=1)
    token = CancelToken()
    qs = items.filter(value=1).cancellable(timeout=5, token=token)
    restored = pickle.loads(pickle.dumps(qs))
    assert type(restored) is type(qs) and [i.name for i in restored] == ["a"]
    assert restored._cancel_spec.timeout == 5 and restored._cancel_spec.token is None  # tokens stay local
    assert restored.filter(name="a").count() == 1
    cache.set("issue-12", qs)
    assert [i.name for i in cache.get("issue-12")] == ["a"]
    typed = pickle.loads(pickle.dumps(CancellableQuerySet(Item).cancellable(timeout=5)))
    assert type(typed) is CancellableQuerySet and typed.count() == 1
