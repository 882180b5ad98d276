"""A tiny ASGI Django app for :mod:`tests.faults.test_asgi`: async views on the ORM, and the pool's figures.

Served by ``uvicorn --factory django.core.asgi:get_asgi_application`` with
``DJANGO_SETTINGS_MODULE=tests.faults.asgi_settings`` (this module is its
``ROOT_URLCONF``):

* ``GET /item/<n>/``: an async view: a count and an insert through the async
  ORM (``acount()``, ``acreate()``), then a transaction through
  ``sync_to_async`` that updates the row and holds the connection for
  :data:`HOLD` seconds on the server (so that requests overlap); answers with
  the server connection it ran on (``CONNECTION_ID()``);
* ``GET /pool/``: this process's PID and pool statistics (``null`` with the
  stock backend).
"""

from __future__ import annotations

import os

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.urls import path

from django_mysql_pooled.pool import registry
from tests.testapp.models import Item

#: Seconds each request keeps its connection busy on the server.
HOLD = 0.005


def _update(pk: int) -> int:
    with transaction.atomic():
        Item.objects.select_for_update().filter(pk=pk).update(value=F("value") + 1)
        with connection.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID(), SLEEP(%s)", [HOLD])
            row = cursor.fetchone()
    return int(row[0])


async def item(request: HttpRequest, n: int) -> JsonResponse:
    """Three ORM round trips on one checkout; the connection goes back when the response is closed."""
    count = await Item.objects.filter(value=n % 10).acount()
    created = await Item.objects.acreate(name=f"request {n}", value=n % 10)
    connection_id = await sync_to_async(_update)(created.pk)
    return JsonResponse({"n": n, "count": count, "id": created.pk, "connection_id": connection_id})


async def pool(request: HttpRequest) -> JsonResponse:
    """This process's pool statistics, without touching the database."""
    current = registry.get_pool(DEFAULT_DB_ALIAS)
    return JsonResponse({"pid": os.getpid(), "pool": None if current is None else current.get_stats()})


urlpatterns = [
    path("item/<int:n>/", item),
    path("pool/", pool),
]
