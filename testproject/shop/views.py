"""JSON endpoints for the demo.

Every response that touched the database names the server connection it ran
on (``CONNECTION_ID()``), so a client can follow connections across requests:

* ``GET /products/`` and ``GET /products/<pk>/``: reads;
* ``POST /orders/`` (``{"product": pk, "quantity": n}``): a write inside
  ``transaction.atomic()``;
* ``/dirty/``: deliberately leaves session state behind on its connection;
* ``/session/``: reports the session state ``/dirty/`` changes, so a client
  can tell whether it leaked into a later request;
* ``/pool/``: this process's pool statistics and PID;
* ``GET /search/?q=<regex>&timeout=2``: reviews whose body matches a regular
  expression, under ``cancellable(timeout=...)``: HTTP 503 (JSON with the
  reason, connection id and elapsed time) when the query was killed;
* ``GET /slow-count/?q=<regex>`` (async, for an ASGI server): counts the
  matching reviews with ``cancellable().acount()``; when the client goes
  away, the ASGI handler cancels the view's task and the query is killed on
  the server. Without ``q`` it counts a pattern that takes minutes;
  ``cancellable=0`` runs it without ``cancellable()`` (for comparison).

The cancellation views need the reviews ``manage.py seed_reviews`` creates.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.pool import registry
from shop.models import Order, Product, Review

logger = logging.getLogger(__name__)

#: The named lock ``/dirty/`` takes with ``GET_LOCK()`` and never releases.
DEMO_LOCK = "dmp_demo"
#: ``/dirty/`` creates a TEMPORARY table under this name, shadowing the real
#: one for every later statement of the session.
SHADOW_TABLE = Product._meta.db_table

#: What ``/slow-count/`` counts without ``q``: nested quantifiers make the
#: regular expression engine backtrack for a few milliseconds on every body,
#: and no body has a digit, so the scan reads the whole table: minutes.
SLOW_PATTERN = r"(\w+\s?){5}\d"
#: The largest ``timeout`` the views accept, in seconds.
MAX_TIMEOUT = 60.0
#: What stopped a cancelled query, by the server's error code.
#: At the deadline the watchdog's ``KILL QUERY`` stops it; the statement's own
#: limit (``max_statement_time``, ``MAX_EXECUTION_TIME``) half a second later,
#: only when no kill could be sent.
STOPPED_BY = {
    1317: "KILL QUERY",
    1969: "MariaDB's max_statement_time",
    3024: "MySQL's MAX_EXECUTION_TIME",
}
#: The server's error for a malformed regular expression (MariaDB and MySQL <= 8.0.3).
ER_REGEXP_ERROR = 1139


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


# -- query cancellation --------------------------------------------------------


class BadRequest(ValueError):
    """A query parameter is missing or malformed (HTTP 400)."""


def _timeout_param(request: HttpRequest, default: float | None) -> float | None:
    raw = request.GET.get("timeout")
    if raw is None or raw == "":
        return default
    try:
        timeout = float(raw)
    except ValueError:
        raise BadRequest(f"timeout must be a number of seconds, got {raw!r}") from None
    if not 0 < timeout <= MAX_TIMEOUT:
        raise BadRequest(f"timeout must be > 0 and <= {MAX_TIMEOUT:g} seconds, got {raw!r}")
    return timeout


def _limit_param(request: HttpRequest) -> int:
    raw = request.GET.get("limit") or "20"
    try:
        limit = int(raw)
    except ValueError:
        raise BadRequest(f"limit must be an integer, got {raw!r}") from None
    if not 1 <= limit <= 100:
        raise BadRequest(f"limit must be between 1 and 100, got {limit}")
    return limit


def _cancelled_response(exc: QueryCancelled, q: str) -> JsonResponse:
    """HTTP 503 for a query stopped on the server."""
    errno = exc.args[0] if exc.args else None
    message = exc.args[1] if len(exc.args) > 1 else str(exc)
    return JsonResponse(
        {
            "error": str(message),
            "q": q,
            "reason": exc.reason,
            "connection_id": exc.connection_id,
            "elapsed": round(exc.elapsed, 3),
            "errno": errno,
            "stopped_by": STOPPED_BY.get(errno, "unknown") if isinstance(errno, int) else "unknown",
        },
        status=503,
    )


def _bad_pattern(exc: DatabaseError) -> bool:
    return bool(exc.args) and exc.args[0] == ER_REGEXP_ERROR


@require_GET
def search(request: HttpRequest) -> JsonResponse:
    """Reviews whose body matches the regular expression ``q``, first ``limit`` (20) by id.

    The query runs under ``cancellable(timeout=...)`` (default 2 s): when the
    deadline passes the statement is killed on the server (``KILL QUERY``,
    and on MariaDB ``max_statement_time`` too) and the view answers 503.
    """
    q = request.GET.get("q", "")
    try:
        if not q:
            raise BadRequest("q (a regular expression) is required")
        timeout = _timeout_param(request, 2.0)
        limit = _limit_param(request)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    reviews = Review.objects.filter(body__iregex=q).order_by("pk").cancellable(timeout=timeout)
    started = time.monotonic()
    try:
        results = list(reviews.values("id", "product_id", "rating", "body")[:limit])
    except QueryCancelled as exc:
        return _cancelled_response(exc, q)
    except DatabaseError as exc:
        if _bad_pattern(exc):
            return JsonResponse({"error": f"bad regular expression: {exc.args[1]}", "q": q}, status=400)
        raise
    elapsed = time.monotonic() - started
    return JsonResponse(
        {
            "q": q,
            "timeout": timeout,
            "elapsed": round(elapsed, 3),
            "count": len(results),
            "results": results,
            "connection_id": _connection_id(),
        }
    )


@require_GET
async def slow_count(request: HttpRequest) -> JsonResponse:
    """Count the reviews matching ``q`` (default: :data:`SLOW_PATTERN`, minutes of work).

    ``await ....cancellable().acount()``: when this task is cancelled (an ASGI
    server's client disconnected) the running statement is killed on the
    server. An optional ``timeout`` sets a deadline as ``/search/`` does.
    ``cancellable=0`` leaves ``cancellable()`` out (the control case: the
    query keeps running on the server after the client went away).
    """
    q = request.GET.get("q") or SLOW_PATTERN
    try:
        timeout = _timeout_param(request, None)
    except BadRequest as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    reviews = Review.objects.filter(body__iregex=q)
    cancellable = request.GET.get("cancellable") != "0"
    if cancellable:
        reviews = reviews.cancellable(timeout=timeout)
    started = time.monotonic()
    try:
        count = await reviews.acount()
    except QueryCancelled as exc:
        return _cancelled_response(exc, q)
    except DatabaseError as exc:
        if _bad_pattern(exc):
            return JsonResponse({"error": f"bad regular expression: {exc.args[1]}", "q": q}, status=400)
        raise
    except asyncio.CancelledError:
        logger.info(
            "GET /slow-count/: the task was cancelled after %.3f s (client gone?); %s",
            time.monotonic() - started,
            "its query was killed" if cancellable else "without cancellable() its query keeps running",
        )
        raise
    elapsed = time.monotonic() - started
    return JsonResponse(
        {
            "q": q,
            "timeout": timeout,
            "elapsed": round(elapsed, 3),
            "count": count,
            "cancellable": cancellable,
            "connection_id": await sync_to_async(_connection_id)(),
        }
    )
