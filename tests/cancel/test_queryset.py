"""``QuerySet.cancellable()``, ``CancelToken`` and ``KILL QUERY`` against the real server."""

from __future__ import annotations

import asyncio
import copy
import queue
import random
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import OperationalError, connection, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Max, Prefetch, QuerySet
from django.db.models.expressions import RawSQL
from django.db.models.manager import BaseManager
from django.test import override_settings

import django_mysql_pooled
from django_mysql_pooled import CancelToken, QueryCancelled
from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper
from django_mysql_pooled.cancel import scope as cancel
from django_mysql_pooled.cancel.hook import SERVER_LIMIT_SLACK
from django_mysql_pooled.cancel.killers import killer_for
from django_mysql_pooled.cancel.queryset import CancellableQuerySet, patch_queryset
from tests.conftest import WrapperFactory
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)


#: ``cancellable()`` is added at run time: the tests reach it untyped (typed code uses CancellableQuerySet).
items: Any = Item.objects


def _slow(seconds: float) -> Any:
    """Items, each row sleeping *seconds* on the server."""
    return items.extra(where=["SLEEP(%s) = 0"], params=[seconds])


def _running(admin: Any, connection_id: int) -> str | None:
    """The statement connection *connection_id* is running now, per PROCESSLIST."""
    cursor = admin.cursor()
    cursor.execute("SELECT INFO FROM information_schema.PROCESSLIST WHERE ID = %s", (connection_id,))
    row = cursor.fetchone()
    return None if row is None else row[0]


def _gone_within(admin: Any, connection_id: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _running(admin, connection_id) is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def _stat(wrapper: BaseDatabaseWrapper, key: str) -> int:
    pool = getattr(wrapper, "pool", None)
    assert pool is not None
    return int(pool.get_stats().get(key, 0))


@pytest.fixture
def client_kill_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server-side limit: only the watchdog's ``KILL QUERY`` can stop the query."""
    monkeypatch.setattr(cancel._Hook, "_with_server_limit", lambda self, raw, sql: sql)


@pytest.fixture
def server_limit_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a dead client: the watchdog never sends ``KILL QUERY``."""
    monkeypatch.setattr(cancel, "_client_kill_enabled", False)


# -- the API -------------------------------------------------------------------


def test_public_names_and_exception_hierarchy() -> None:
    assert django_mysql_pooled.CancelToken is CancelToken
    assert issubclass(QueryCancelled, OperationalError)
    exc = QueryCancelled("m", reason="timeout", connection_id=7, elapsed=0.5)
    assert exc.args == (1317, "m") and exc.reason == "timeout" and exc.connection_id == 7


def test_cancellable_returns_a_clone_that_keeps_its_state() -> None:
    token = CancelToken()
    base = items.all()
    qs = base.cancellable(timeout=2.0, token=token)
    assert qs is not base and not hasattr(base, "_cancel_spec")
    for derived in (qs.filter(value=1), qs.order_by("name"), qs.values("name"), qs.all()):
        spec = derived._cancel_spec
        assert spec.timeout == 2.0 and spec.token is token
    assert items.cancellable(timeout=1)._cancel_spec.timeout == 1
    with pytest.raises(ValueError, match=r"cancellable\(timeout=0\): the timeout must be a positive"):
        items.cancellable(timeout=0)


def test_typed_queryset_class() -> None:
    Item.objects.create(name="a")
    qs: CancellableQuerySet[Item] = CancellableQuerySet(Item)
    assert qs.count() == 1 and qs.cancellable(timeout=5).count() == 1
    assert [i.name for i in qs.cancellable(timeout=5)] == ["a"]


def test_setting_turns_the_patch_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(QuerySet, "cancellable")
    monkeypatch.delattr(BaseManager, "cancellable")
    config = apps.get_app_config("django_mysql_pooled")
    with override_settings(DJANGO_MYSQL_POOLED_PATCH_QUERYSET=False):
        config.ready()
    assert not hasattr(QuerySet, "cancellable")
    config.ready()
    assert hasattr(QuerySet, "cancellable") and hasattr(items, "cancellable")
    patch_queryset()  # idempotent


def test_every_evaluation_form_works_under_a_deadline() -> None:
    item = Item.objects.create(name="a", value=1)
    qs = items.cancellable(timeout=5)
    assert [i.pk for i in qs] == [item.pk]
    assert qs.count() == 1 and qs.exists() and qs.aggregate(m=Max("value")) == {"m": 1}
    assert qs.get(pk=item.pk) == item and qs.first() == item and qs.last() == item
    assert list(qs.iterator()) == [item] and qs.in_bulk() == {item.pk: item} and qs.contains(item)
    assert qs.explain()
    assert qs.filter(pk=item.pk).update(value=2) == 1
    assert qs.filter(pk=item.pk).delete()[0] == 1


# -- killing -----------------------------------------------------------------------


def test_timeout_kills_the_query_on_the_server(admin: Any, client_kill_only: None) -> None:
    Item.objects.create(name="a")
    kills = _stat(connection, "kills_sent")
    started = time.monotonic()
    with pytest.raises(QueryCancelled, match=r"cancelled after .* cancellable\(timeout=0.5\)") as info:
        list(_slow(5).cancellable(timeout=0.5))
    took = time.monotonic() - started
    assert 0.45 < took < 1.5, took
    exc = info.value
    assert exc.reason == "timeout" and exc.args[0] == 1317 and 0.45 < exc.elapsed < 1.5
    assert exc.connection_id == connection.connection.thread_id()
    assert _gone_within(admin, exc.connection_id or 0, 0.1)
    assert _stat(connection, "kills_sent") == kills + 1
    assert Item.objects.count() == 1  # the connection is still usable


def test_token_cancel_from_another_thread(admin: Any) -> None:
    Item.objects.create(name="a")
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(QueryCancelled, match="its CancelToken was cancelled") as info:
        _slow(5).cancellable(token=token).count()
    assert info.value.reason == "cancelled" and 0.25 < time.monotonic() - started < 1.5
    assert _gone_within(admin, info.value.connection_id or 0, 0.1)
    with pytest.raises(QueryCancelled, match="CancelToken"):  # a cancelled token stays cancelled
        items.cancellable(token=token).count()
    assert Item.objects.count() == 1


def test_one_token_cancels_several_threads(admin: Any) -> None:
    Item.objects.create(name="a")
    token = CancelToken()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _slow(5).cancellable(token=token).exists()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    token.cancel()
    for thread in threads:
        thread.join(5)
    assert len(errors) == 2 and all(isinstance(e, QueryCancelled) and e.reason == "cancelled" for e in errors)


def test_benchmark_returning_zero_still_raises(client_kill_only: None) -> None:
    Item.objects.create(name="a")
    qs = items.annotate(b=RawSQL("BENCHMARK(%s, MD5('a'))", (10**11,))).cancellable(timeout=0.3)
    with pytest.raises(QueryCancelled) as info:
        list(qs)
    assert info.value.reason == "timeout" and info.value.elapsed < 1.5


def test_deadline_covers_every_statement_of_the_evaluation() -> None:
    """Two statements (the groups, then their prefetched permissions) of 0.4 s each
    fit a 0.6 s timeout alone but not together."""
    group = Group.objects.create(name="g")
    group.permissions.add(Permission.objects.order_by("pk")[0])
    permissions: Any = Permission.objects.extra(where=["SLEEP(0.4) = 0"])
    slow_groups: Any = Group.objects.extra(where=["SLEEP(0.4) = 0"])
    assert len(slow_groups.cancellable(timeout=0.6)) == 1
    assert len(permissions.filter(group=group).cancellable(timeout=0.6)) == 1
    qs = slow_groups.prefetch_related(Prefetch("permissions", queryset=permissions)).cancellable(timeout=0.6)
    started = time.monotonic()
    with pytest.raises(QueryCancelled) as info:
        list(qs)
    assert 0.55 < time.monotonic() - started < 1.5 and 0.55 < info.value.elapsed < 1.5


def test_statement_after_the_deadline_is_not_sent() -> None:
    Item.objects.create(name="a")
    with pytest.raises(QueryCancelled) as info, cancel.cancel_scope(connection, timeout=0.2):
        list(_slow(0.3))  # no kill: the server limit or the watchdog stop it
        raise AssertionError("not reached")
    assert info.value.reason == "timeout"
    with pytest.raises(QueryCancelled, match="deadline passed"), cancel.cancel_scope(connection, timeout=0.01):
        time.sleep(0.05)
        Item.objects.count()


def test_server_side_limit_alone_stops_the_query(admin: Any, server_limit_only: None) -> None:
    Item.objects.create(name="a")
    kills = _stat(connection, "kills_sent")
    with pytest.raises(QueryCancelled) as info:
        _slow(5).cancellable(timeout=0.5).count()
    exc = info.value
    # the server's limit runs SERVER_LIMIT_SLACK past the deadline: a backstop, not a second timer
    assert exc.args[0] == 1969 and exc.reason == "timeout"
    assert 0.5 + SERVER_LIMIT_SLACK - 0.05 <= exc.elapsed < 0.5 + SERVER_LIMIT_SLACK + 1.0
    assert "max_statement_time" in str(exc.__cause__)
    assert _gone_within(admin, exc.connection_id or 0, 0.1)
    assert _stat(connection, "kills_sent") == kills
    # BENCHMARK ends silently under max_statement_time: the deadline still raises.
    bench: Any = Item.objects.annotate(b=RawSQL("BENCHMARK(%s, MD5('a'))", (10**11,)))
    with pytest.raises(QueryCancelled):
        list(bench.cancellable(timeout=0.3))


def test_at_the_deadline_the_kill_stops_the_query_not_the_servers_limit() -> None:
    """With the killer working, a timeout ends with its KILL QUERY (1317): the server's own
    timer, set to the same instant, raced it and could interrupt the session's next statement."""
    Item.objects.create(name="a")
    for _ in range(3):
        with pytest.raises(QueryCancelled) as info:
            _slow(5).cancellable(timeout=0.3).count()
        assert info.value.args[0] == 1317 and info.value.reason == "timeout", info.value
        assert info.value.elapsed < 0.3 + SERVER_LIMIT_SLACK


def test_killed_update_rolls_back_its_statement() -> None:
    for name in "abc":
        Item.objects.create(name=name, value=0)
    qs = items.extra(where=["SLEEP(0.3) = 0"]).cancellable(timeout=0.5)
    with pytest.raises(QueryCancelled):
        qs.update(value=F("value") + 1)
    assert list(Item.objects.values_list("value", flat=True)) == [0, 0, 0]


def test_killed_write_in_atomic_commits_nothing(admin: Any) -> None:
    item = Item.objects.create(name="kept", value=0)
    with pytest.raises(QueryCancelled), transaction.atomic():
        Item.objects.create(name="in-block")
        Item.objects.filter(pk=item.pk).update(value=1)
        _slow(5).cancellable(timeout=0.3).update(value=2)
    cursor = admin.cursor()
    table = f"{connection.settings_dict['NAME']}.{Item._meta.db_table}"
    cursor.execute(f"SELECT name, value FROM {table} ORDER BY id")
    assert cursor.fetchall() == (("kept", 0),)
    assert list(Item.objects.values_list("name", "value")) == [("kept", 0)]


def test_connection_returns_to_the_pool_clean_after_a_kill(pooled: WrapperFactory) -> None:
    wrapper: Any = pooled({"max_size": 1})
    with pytest.raises(QueryCancelled), cancel.cancel_scope(wrapper, timeout=0.3), wrapper.cursor() as cursor:
        cursor.execute("SELECT SLEEP(5)")
    connection_id = wrapper.connection.thread_id()
    wrapper.close()
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID(), 1")
        assert cursor.fetchone() == (connection_id, 1)  # the same connection, reused
    stats = wrapper.pool.get_stats()
    assert stats["queries_cancelled"] == 1 and stats.get("connections_lost", 0) == 0


def test_stock_backend(stock: WrapperFactory, client_kill_only: None) -> None:
    wrapper = stock()
    with pytest.raises(QueryCancelled), cancel.cancel_scope(wrapper, timeout=0.3), wrapper.cursor() as cursor:
        cursor.execute("SELECT SLEEP(5)")
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


def test_kills_go_through_when_the_pool_is_exhausted(pooled: WrapperFactory, client_kill_only: None) -> None:
    owner: Any = pooled({"max_size": 2, "timeout": 10}, alias="exhausted")
    settings = owner.settings_dict
    errors: list[BaseException] = []
    running = threading.Barrier(3)

    def run() -> None:
        wrapper = PooledWrapper(copy.deepcopy(settings), "exhausted")
        try:
            with cancel.cancel_scope(wrapper, timeout=1.0), wrapper.cursor() as cursor:
                running.wait()
                cursor.execute("SELECT SLEEP(10)")
        except BaseException as exc:
            errors.append(exc)
        finally:
            wrapper.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    running.wait()
    pool = owner.pool
    assert pool is not None and pool.get_stats()["pool_available"] == 0
    for thread in threads:
        thread.join(5)
    assert [type(e) for e in errors] == [QueryCancelled, QueryCancelled]
    assert pool.get_stats()["kills_sent"] == 2


def test_killer_reconnects_after_its_connection_was_killed(admin: Any, client_kill_only: None) -> None:
    Item.objects.create(name="a")
    with pytest.raises(QueryCancelled):
        _slow(5).cancellable(timeout=0.2).count()
    killer = killer_for(connection.get_connection_params())
    first = killer.connection_id
    assert first is not None
    admin.cursor().execute(f"KILL CONNECTION {first}")
    kills = _stat(connection, "kills_sent")
    started = time.monotonic()
    with pytest.raises(QueryCancelled):
        _slow(5).cancellable(timeout=0.2).count()
    assert time.monotonic() - started < 1.5
    assert killer.connection_id not in (None, first) and _stat(connection, "kills_sent") == kills + 1
    killer.close()  # broken or closed: the next kill opens a new one
    with pytest.raises(QueryCancelled):
        _slow(5).cancellable(timeout=0.2).count()
    assert _stat(connection, "kills_sent") == kills + 2


# -- async -------------------------------------------------------------------------


def _run_and_cancel(make: Any, admin: Any) -> float:
    """Start the coroutine ``make()`` as a task, cancel it once its SLEEP runs; return
    the seconds until the server query was gone."""

    async def main() -> float:
        task = asyncio.ensure_future(make())
        deadline = time.monotonic() + 5
        while not _sleeping(admin):
            assert time.monotonic() < deadline, "the query never started"
            await asyncio.sleep(0.01)
        task.cancel()
        cancelled_at = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        while _sleeping(admin):
            assert time.monotonic() - cancelled_at < 1, "the query was not killed"
            await asyncio.sleep(0.005)
        gone = time.monotonic() - cancelled_at
        await sync_to_async(connections.close_all)()
        return gone

    return asyncio.run(main())


def _sleeping(admin: Any) -> bool:
    cursor = admin.cursor()
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE '%%SLEEP(5%%' AND ID != %s",
        (admin.thread_id(),),
    )
    return bool(cursor.fetchone()[0])


def test_task_cancellation_kills_aget(admin: Any) -> None:
    item = Item.objects.create(name="a")
    gone = _run_and_cancel(lambda: _slow(5).cancellable(token=CancelToken()).aget(pk=item.pk), admin)
    assert gone < 0.5


def test_task_cancellation_kills_acount_and_async_for(admin: Any) -> None:
    Item.objects.create(name="a")
    assert _run_and_cancel(lambda: _slow(5).cancellable().acount(), admin) < 0.5

    async def iterate() -> list[Item]:
        return [item async for item in _slow(5).cancellable(timeout=30)]

    assert _run_and_cancel(iterate, admin) < 0.5


def test_async_timeout_and_results() -> None:
    item = Item.objects.create(name="a")

    async def main() -> None:
        qs = items.cancellable(timeout=5)
        assert await qs.aget(pk=item.pk) == item
        assert await qs.acount() == 1 and await qs.aexists() and await qs.afirst() == item
        assert [i async for i in qs] == [item]
        with pytest.raises(QueryCancelled):
            await _slow(5).cancellable(timeout=0.3).acount()
        await sync_to_async(connections.close_all)()

    asyncio.run(main())


# -- race stress ---------------------------------------------------------------------


@pytest.fixture
def raw_connection() -> Iterator[BaseDatabaseWrapper]:
    connection.ensure_connection()
    yield connection


@pytest.mark.slow
def test_race_stress_kills_never_reach_the_next_statement(raw_connection: BaseDatabaseWrapper) -> None:
    """Kills timed to land around the end of short statements: the statement right
    after each one, on the same connection, must never be interrupted."""
    wrapper = raw_connection
    cursor = wrapper.cursor()
    durations = []
    for _ in range(30):
        started = time.monotonic()
        cursor.execute("SELECT SLEEP(0.002)")
        durations.append(time.monotonic() - started)
    typical = statistics.median(durations)
    fire: queue.Queue[tuple[float, CancelToken] | None] = queue.Queue()

    def canceller() -> None:
        while (job := fire.get()) is not None:
            at, token = job
            time.sleep(max(0.0, at - time.monotonic()))
            token.cancel()

    thread = threading.Thread(target=canceller)
    thread.start()
    outcomes = {"completed": 0, "cancelled": 0, "failures": 0}
    rounds = 2000
    try:
        for i in range(rounds):
            token = CancelToken()
            if i % 2:
                scope = cancel.cancel_scope(wrapper, token=token)
                fire.put((time.monotonic() + random.uniform(0, 2 * typical), token))
            else:
                scope = cancel.cancel_scope(wrapper, timeout=random.uniform(0.0005, 2 * typical))
            try:
                with scope:
                    cursor.execute("SELECT SLEEP(0.002)")
                outcomes["completed"] += 1
            except QueryCancelled:
                outcomes["cancelled"] += 1
            try:
                cursor.execute("SELECT SLEEP(0.002)")  # a late kill would interrupt this one
                if cursor.fetchone() != (0,):
                    outcomes["failures"] += 1
            except (OperationalError, MySQLdb.OperationalError):
                outcomes["failures"] += 1
    finally:
        fire.put(None)
        thread.join()
        cursor.close()
    print(f"race stress: {rounds} rounds, typical statement {typical * 1000:.2f} ms, {outcomes}")
    assert outcomes["failures"] == 0
    assert outcomes["cancelled"] > rounds // 10 and outcomes["completed"] > rounds // 10
