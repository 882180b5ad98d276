"""JSON endpoints for the demo.

Every response that touched the database names the server connection it ran
on (``CONNECTION_ID()``), so a client can follow connections across requests:

* ``GET /products/`` and ``GET /products/<pk>/``: reads;
* ``POST /orders/`` (``{"product": pk, "quantity": n}``): a write inside
  ``transaction.atomic()``;
* ``/dirty/``: deliberately leaves session state behind on its connection;
* ``/session/``: reports the session state ``/dirty/`` changes, so a client
  can tell whether it leaked into a later request;
* ``/pool/``: this process's pool statistics and PID.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from django_mysql_pooled import registry
from shop.models import Order, Product

#: The named lock ``/dirty/`` takes with ``GET_LOCK()`` and never releases.
DEMO_LOCK = "dmp_demo"
#: ``/dirty/`` creates a TEMPORARY table under this name, shadowing the real
#: one for every later statement of the session.
SHADOW_TABLE = Product._meta.db_table


def _fetchone(sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:  # pragma: no cover - these queries always return a row
        raise RuntimeError(f"no row from {sql!r}")
    return tuple(row)


def _connection_id() -> int:
    return int(_fetchone("SELECT CONNECTION_ID()")[0])


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode()
    return None if value is None else str(value)


def _product_json(product: Product) -> dict[str, Any]:
    return {"id": product.pk, "name": product.name, "price": str(product.price), "stock": product.stock}


@require_GET
def product_list(request: HttpRequest) -> JsonResponse:
    products = [_product_json(p) for p in Product.objects.all()]
    return JsonResponse({"products": products, "connection_id": _connection_id()})


@require_GET
def product_detail(request: HttpRequest, pk: int) -> JsonResponse:
    product = Product.objects.filter(pk=pk).first()
    cid = _connection_id()
    if product is None:
        return JsonResponse({"error": f"product {pk} not found", "connection_id": cid}, status=404)
    return JsonResponse({"product": _product_json(product), "connection_id": cid})


@csrf_exempt
@require_POST
def create_order(request: HttpRequest) -> JsonResponse:
    try:
        data = json.loads(request.body)
        product_id = int(data["product"])
        quantity = int(data.get("quantity", 1))
    except (ValueError, KeyError, TypeError, AttributeError):
        return JsonResponse({"error": 'expected a JSON body {"product": <pk>, "quantity": <n>}'}, status=400)
    if quantity < 1:
        return JsonResponse({"error": "quantity must be >= 1"}, status=400)
    with transaction.atomic():
        cid = _connection_id()
        product = Product.objects.select_for_update().filter(pk=product_id).first()
        if product is None:
            return JsonResponse({"error": f"product {product_id} not found", "connection_id": cid}, status=404)
        if product.stock < quantity:
            return JsonResponse({"error": f"only {product.stock} left", "connection_id": cid}, status=409)
        product.stock -= quantity
        product.save(update_fields=["stock"])
        order = Order.objects.create(product=product, quantity=quantity, total=product.price * quantity)
    return JsonResponse(
        {"order": order.pk, "product": product.pk, "stock_left": product.stock, "connection_id": cid},
        status=201,
    )


@csrf_exempt
def dirty(request: HttpRequest) -> JsonResponse:
    """Change this connection's session state and leave it that way."""
    table = connection.ops.quote_name(SHADOW_TABLE)
    with connection.cursor() as cursor:
        cursor.execute("SET @leak = 'x'")
        cursor.execute("SET SESSION sql_mode = ''")
        cursor.execute("SET SESSION time_zone = '+05:00'")
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {table} ("
            "id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL, "
            "price DECIMAL(10, 2) NOT NULL, stock INT UNSIGNED NOT NULL)"
        )
    got_lock, cid = _fetchone("SELECT GET_LOCK(%s, 0), CONNECTION_ID()", [DEMO_LOCK])
    return JsonResponse({"connection_id": int(cid), "got_lock": got_lock == 1})


@require_GET
def session(request: HttpRequest) -> JsonResponse:
    """Report the session state ``/dirty/`` changes, and the defaults to compare it with."""
    # Connect first: mysql_is_mariadb is cached per wrapper and, read before
    # the wrapper's first query, opens and closes a temporary connection of
    # its own (one extra pool checkout per server thread).
    connection.ensure_connection()
    # MariaDB < 11.1 only knows tx_isolation; MySQL 8 only transaction_isolation.
    isolation = "tx_isolation" if getattr(connection, "mysql_is_mariadb", False) else "transaction_isolation"
    row = _fetchone(
        "SELECT CONNECTION_ID(), @leak, @@SESSION.sql_mode, @@GLOBAL.sql_mode, "
        "@@SESSION.time_zone, @@GLOBAL.time_zone, IS_USED_LOCK(%s), "
        f"@@SESSION.{isolation}, @@GLOBAL.{isolation}",
        [DEMO_LOCK],
    )
    cid, leak, sql_mode, global_sql_mode, time_zone, global_time_zone, lock_holder, tx, global_tx = row
    with connection.cursor() as cursor:
        cursor.execute(f"SHOW CREATE TABLE {connection.ops.quote_name(SHADOW_TABLE)}")
        create = cursor.fetchone()
    temp_table = create is not None and "CREATE TEMPORARY TABLE" in (_text(create[1]) or "")
    # Django sets the configured isolation level on every new connection
    # (OPTIONS["isolation_level"], "read committed" by default).
    configured = getattr(connection, "isolation_level", None)
    expected_tx = configured.upper().replace(" ", "-") if configured else _text(global_tx)
    return JsonResponse(
        {
            "connection_id": int(cid),
            "leak": _text(leak),
            "sql_mode": _text(sql_mode),
            "global_sql_mode": _text(global_sql_mode),
            "time_zone": _text(time_zone),
            "global_time_zone": _text(global_time_zone),
            "temp_table": temp_table,
            "lock_holder": lock_holder,
            "holds_lock": lock_holder is not None and int(lock_holder) == int(cid),
            "isolation": _text(tx),
            "global_isolation": _text(global_tx),
            "expected_isolation": expected_tx,
        }
    )


@require_GET
def pool_stats(request: HttpRequest) -> JsonResponse:
    """This process's pool statistics (``null`` without a pool) and PID."""
    settings_dict = connection.settings_dict
    pool = registry.get_pool(DEFAULT_DB_ALIAS)
    return JsonResponse(
        {
            "pid": os.getpid(),
            "alias": DEFAULT_DB_ALIAS,
            "engine": settings_dict["ENGINE"],
            "conn_max_age": settings_dict["CONN_MAX_AGE"],
            "pool": pool.get_stats() if pool is not None else None,
        }
    )
