"""Every async QuerySet method of the installed Django honours the deadline and kills its
query when the awaiting task is cancelled (issue 12, item 3).

The statements wait on a table lock held by another session (``LOCK TABLES ... WRITE``),
so reads and writes alike stay on the server until killed.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db.models import Max, QuerySet

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel.queryset import CancellableQuerySetMixin
from tests.cancel.helpers import items
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

#: Seconds: a generous bound for anything that should take well under one.
BOUND = 10.0

#: The async API of the installed Django: every ``a*`` coroutine or async generator method.
ASYNC_API = sorted(
    name
    for name, member in inspect.getmembers(QuerySet)
    if name.startswith("a") and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
)


async def _collect(rows: AsyncIterator[Any]) -> list[Any]:
    return [row async for row in rows]


#: How each method is called: ``call(queryset, existing_item)``.
CALLS: dict[str, Callable[[Any, Item], Awaitable[Any]]] = {
    "aaggregate": lambda qs, item: qs.aaggregate(m=Max("value")),
    "abulk_create": lambda qs, item: qs.abulk_create([Item(name="new")]),
    "abulk_update": lambda qs, item: qs.abulk_update([item], ["value"]),
    "acontains": lambda qs, item: qs.acontains(item),
    "acount": lambda qs, item: qs.acount(),
    "acreate": lambda qs, item: qs.acreate(name="new"),
    "adelete": lambda qs, item: qs.adelete(),
    "aearliest": lambda qs, item: qs.aearliest("pk"),
    "aexists": lambda qs, item: qs.aexists(),
    "aexplain": lambda qs, item: qs.aexplain(),
    "afirst": lambda qs, item: qs.afirst(),
    "aget": lambda qs, item: qs.aget(pk=item.pk),
    "aget_or_create": lambda qs, item: qs.aget_or_create(name="new"),
    "ain_bulk": lambda qs, item: qs.ain_bulk([item.pk]),
    "aiterator": lambda qs, item: _collect(qs.aiterator(chunk_size=10)),
    "alast": lambda qs, item: qs.alast(),
    "alatest": lambda qs, item: qs.alatest("pk"),
    "aupdate": lambda qs, item: qs.aupdate(value=2),
    "aupdate_or_create": lambda qs, item: qs.aupdate_or_create(name="a", defaults={"value": 3}),
}


def test_every_async_method_is_covered() -> None:
    assert "aiterator" in ASYNC_API and len(ASYNC_API) >= 19
    missing = [name for name in ASYNC_API if name not in CancellableQuerySetMixin.__dict__]
    assert not missing, f"async QuerySet methods not made cancellable: {missing}"
    assert sorted(CALLS) == ASYNC_API, "a new async QuerySet method needs a call in CALLS"


class Lock:
    """``LOCK TABLES <item> WRITE`` held by the admin session: every statement on it waits."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin
        self.table = f"`{connection.settings_dict['NAME']}`.`{Item._meta.db_table}`"

    def take(self) -> None:
        self.admin.cursor().execute(f"LOCK TABLES {self.table} WRITE")

    def release(self) -> None:
        self.admin.cursor().execute("UNLOCK TABLES")

    def waiting(self) -> int:
        """Statements of the test database waiting or running now (other than the admin's)."""
        cursor = self.admin.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID != %s AND COMMAND = 'Query'",
            (connection.settings_dict["NAME"], self.admin.thread_id()),
        )
        return int(cursor.fetchone()[0])


@pytest.fixture
def lock(admin: Any) -> Iterator[Lock]:
    held = Lock(admin)
    try:
        yield held
    finally:
        held.release()


async def _until(predicate: Callable[[], bool], message: str) -> float:
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < BOUND, message
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def _run(lock: Lock, body: Callable[[], Awaitable[None]]) -> None:
    """Run *body* with the table locked; then unlock and close the ORM's connections."""

    async def main() -> None:
        lock.take()
        try:
            await body()
        finally:
            lock.release()  # a statement left waiting (on failure) ends now
            await sync_to_async(connections.close_all)()

    asyncio.run(main())


@pytest.mark.parametrize("name", ASYNC_API)
def test_deadline(name: str, lock: Lock) -> None:
    item = Item.objects.create(name="a")

    async def body() -> None:
        started = time.monotonic()
        with pytest.raises(QueryCancelled) as info:
            await asyncio.wait_for(CALLS[name](items.cancellable(timeout=0.3), item), BOUND)
        assert info.value.reason == "timeout" and time.monotonic() - started < BOUND
        # Gone while the lock is still held (the server may show it a moment longer).
        await _until(lambda: lock.waiting() == 0, f"{name}: the statement is still on the server")

    _run(lock, body)


@pytest.mark.parametrize("name", ASYNC_API)
def test_task_cancellation_kills_the_query(name: str, lock: Lock) -> None:
    item = Item.objects.create(name="a")

    async def body() -> None:
        task = asyncio.ensure_future(CALLS[name](items.cancellable(), item))
        await _until(lambda: lock.waiting() > 0, f"{name}: no statement reached the server")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, BOUND)
        # Gone while the lock is still held: killed, not finished.
        await _until(lambda: lock.waiting() == 0, f"{name}: the statement was not killed")

    _run(lock, body)
