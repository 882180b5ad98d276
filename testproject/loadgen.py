#!/usr/bin/env python
"""Send a burst of concurrent requests to the test project and check session hygiene.

Usage (``demo.sh`` runs it against a gunicorn it started)::

    python testproject/loadgen.py --url http://127.0.0.1:8000 [--requests 2000] [--concurrency 32]

The burst mixes product reads (``GET /products/<pk>/``), order writes
(``POST /orders/``), ``POST /dirty/`` (which leaves session state behind on
its connection: a user variable, ``sql_mode``, ``time_zone``, the isolation
level, a TEMPORARY table shadowing ``shop_product``, a ``GET_LOCK``) and
``GET /session/`` (which reports that state). Every response names the server
connection it ran on, so the script can tell which ``/session/`` requests ran
on a connection that had served ``/dirty/`` before: every one of them must
still see a clean session.

It prints requests served and failed, connections opened against checkouts
(the pool's ``/pool/`` statistics: ``connections_num`` vs ``requests_num``),
the server's own count (``SHOW GLOBAL STATUS LIKE 'Connections'``, read with
MySQLdb when it is importable), resets done, and the leak verdict.

HTTP uses the standard library only. Exit status: 0 all served and no leak;
1 requests failed (no leak); 2 session state leaked; 3 inconclusive (no
``/session/`` ran on a connection that had served ``/dirty/``); 4 setup error.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_LEAK = 2
EXIT_INCONCLUSIVE = 3
EXIT_SETUP = 4

DEFAULT_DATABASE_URL = "mysql-pooled://root@127.0.0.1:3306/dmp_testproject?pool=true&pool_max_size=8"
DEFAULT_MIX = "read=45,write=20,dirty=15,session=20"

#: kind -> (method, label, expected status)
ENDPOINTS: dict[str, tuple[str, str, int]] = {
    "read": ("GET", "GET /products/<pk>/", 200),
    "write": ("POST", "POST /orders/", 201),
    "dirty": ("POST", "POST /dirty/", 200),
    "session": ("GET", "GET /session/", 200),
}

Json = dict[str, Any]

# No proxies: the target is always a local server, whatever http_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SetupError(Exception):
    """The burst cannot start (server unreachable, no products, bad arguments)."""


@dataclasses.dataclass
class Result:
    kind: str
    path: str
    product_id: int  # the product a read or write asked for
    status: int | None  # None: no HTTP response at all
    body: Json | None
    error: str | None
    sent: float
    received: float

    @property
    def ok(self) -> bool:
        return self.status == ENDPOINTS[self.kind][2] and self.body is not None

    @property
    def connection_id(self) -> int | None:
        cid = self.body.get("connection_id") if self.body else None
        return cid if isinstance(cid, int) else None


def request(
    base: str, method: str, path: str, payload: Json | None, timeout: float
) -> tuple[int | None, Json | None, str | None]:
    """One HTTP request: (status or None, JSON body or None, error text or None)."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    status: int | None
    try:
        with _opener.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return None, None, f"{type(exc).__name__}: {reason}"
    try:
        body = json.loads(raw)
    except ValueError:
        return status, None, f"HTTP {status}, not JSON: {raw[:200]!r}"
    if not isinstance(body, dict):
        return status, None, f"HTTP {status}, unexpected JSON: {body!r:.200}"
    error = body.get("error") if status is not None and status >= 400 else None
    return status, body, None if error is None else str(error)


def get_json(base: str, path: str, timeout: float) -> Json:
    status, body, error = request(base, "GET", path, None, timeout)
    if status != 200 or body is None:
        raise SetupError(f"GET {base}{path} failed: {error or f'HTTP {status}'}")
    return body


# -- the server's view (MySQLdb) ---------------------------------------------


class ServerView:
    """``SHOW GLOBAL STATUS`` over one MySQLdb connection kept open for the burst,
    so reading it does not count a connection of its own."""

    def __init__(self, url: str) -> None:
        self.conn: Any = None
        self.error: str | None = None
        parts = urllib.parse.urlsplit(url)
        self.target = f"{parts.hostname or '127.0.0.1'}:{parts.port or 3306}"
        try:
            import MySQLdb  # the project's driver; only this part of the script needs it
        except ImportError as exc:
            self.error = f"MySQLdb not importable ({exc})"
            return
        try:
            self.conn = MySQLdb.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 3306,
                user=urllib.parse.unquote(parts.username or "root"),
                password=urllib.parse.unquote(parts.password or ""),
                connect_timeout=5,
            )
        except MySQLdb.Error as exc:
            self.error = f"cannot connect to {self.target}: {exc}"

    def status(self, name: str) -> int | None:
        if self.conn is None:
            return None
        with self.conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE %s", [name])
            row = cursor.fetchone()
        return int(row[1]) if row else None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# -- the burst ---------------------------------------------------------------


def parse_mix(text: str) -> dict[str, float]:
    mix: dict[str, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in ENDPOINTS:
            raise SetupError(f"--mix: expected kind=weight with kind in {sorted(ENDPOINTS)}, got {part!r}")
        try:
            mix[key] = float(value)
        except ValueError:
            raise SetupError(f"--mix: weight of {key!r} is not a number: {value!r}") from None
        if mix[key] < 0:
            raise SetupError(f"--mix: weight of {key!r} is negative")
    if not mix or sum(mix.values()) <= 0:
        raise SetupError("--mix: all weights are zero")
    return mix


def one(base: str, kind: str, product_id: int, timeout: float) -> Result:
    method = ENDPOINTS[kind][0]
    payload: Json | None = None
    if kind == "read":
        path = f"/products/{product_id}/"
    elif kind == "write":
        path, payload = "/orders/", {"product": product_id, "quantity": 1}
    else:
        path = f"/{kind}/"
    sent = time.monotonic()
    status, body, error = request(base, method, path, payload, timeout)
    return Result(kind, path, product_id, status, body, error, sent, time.monotonic())


def burst(base: str, plan: Sequence[tuple[str, int]], concurrency: int, timeout: float) -> list[Result]:
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="loadgen") as pool:
        futures = [pool.submit(one, base, kind, pk, timeout) for kind, pk in plan]
        return [f.result() for f in futures]


# -- analysis ----------------------------------------------------------------


def session_problems(body: Json) -> list[str]:
    """What a ``/session/`` response shows that a fresh session would not."""
    problems = []
    if body.get("leak") is not None:
        problems.append(f"@leak = {body['leak']!r}")
    if body.get("sql_mode") != body.get("global_sql_mode"):
        problems.append(f"sql_mode = {body.get('sql_mode')!r} (global: {body.get('global_sql_mode')!r})")
    if body.get("time_zone") != body.get("global_time_zone"):
        problems.append(f"time_zone = {body.get('time_zone')!r} (global: {body.get('global_time_zone')!r})")
    if body.get("temp_table"):
        problems.append("a TEMPORARY TABLE shadows shop_product")
    if body.get("holds_lock"):
        problems.append("holds GET_LOCK('dmp_demo')")
    if body.get("isolation") != body.get("expected_isolation"):
        problems.append(f"isolation = {body.get('isolation')!r} (expected {body.get('expected_isolation')!r})")
    return problems


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stat(stats: Json | None, key: str) -> int:
    value = (stats or {}).get(key, 0)
    return value if isinstance(value, int) else 0


@dataclasses.dataclass
class Report:
    lines: list[str] = dataclasses.field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        self.lines.append(f"{label:<14} {text}" if label else f"{'':<14} {text}")

    def print(self) -> None:
        print("\n".join(self.lines), flush=True)


def analyse(
    results: list[Result],
    product_ids: set[int],
    before: Json,
    after: Json,
    server: tuple[int | None, int | None, str | None],
    elapsed: float,
    concurrency: int,
) -> tuple[int, Report, Json]:
    report = Report()
    summary: Json = {}
    pooled = after.get("pool") is not None
    engine = after.get("engine")
    pool_after: Json | None = after.get("pool")
    pool_before: Json | None = before.get("pool")
    backend = f"{engine}, CONN_MAX_AGE={after.get('conn_max_age')}"
    if pooled:
        backend += f", pool max_size={stat(pool_after, 'pool_max')}"
    else:
        backend += ", no pool"
    report.add("backend", f"{backend}; gunicorn worker pid {after.get('pid')}")
    if before.get("pid") != after.get("pid"):
        report.add("", f"WARNING: the worker changed during the burst (pid {before.get('pid')} -> {after.get('pid')})")

    # -- requests
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    rate = len(results) / elapsed if elapsed else 0.0
    report.add(
        "requests", f"{len(results)} sent from {concurrency} client threads in {elapsed:.2f} s ({rate:.0f} req/s)"
    )
    report.add("  served", f"{len(ok)} ok, {len(failed)} failed")
    by_kind = Counter(r.kind for r in results)
    ok_by_kind = Counter(r.kind for r in ok)
    for kind, (_method, label, _status) in ENDPOINTS.items():
        latencies = [(r.received - r.sent) * 1000 for r in results if r.kind == kind and r.ok]
        report.add(
            "",
            f"  {label:<20} {ok_by_kind[kind]:>5}/{by_kind[kind]:<5} ok   "
            f"p50 {percentile(latencies, 0.5):6.1f} ms  p95 {percentile(latencies, 0.95):6.1f} ms",
        )
    failures: Counter[tuple[str, str]] = Counter()
    samples: dict[tuple[str, str], str] = {}
    for r in failed:
        key = (ENDPOINTS[r.kind][1], "no response" if r.status is None else f"HTTP {r.status}")
        failures[key] += 1
        samples.setdefault(key, r.error or "")
    for (label, what), count in failures.most_common():
        report.add("  FAILED", f"{count:>5} x {label} -> {what}: {samples[(label, what)]}")
    shadowed = [r for r in failed if r.kind in ("read", "write") and r.status == 404 and r.product_id in product_ids]
    if shadowed:
        report.add("", f"  {len(shadowed)} of those were 404s for products that exist: the TEMPORARY TABLE a /dirty/")
        report.add("", "  request created shadowed shop_product on a later request's connection")
    summary["requests"] = {"sent": len(results), "ok": len(ok), "failed": len(failed), "seconds": round(elapsed, 3)}

    # -- connections
    answered = [r for r in results if r.connection_id is not None]
    seen = {r.connection_id for r in answered}
    opened = stat(pool_after, "connections_num") - stat(pool_before, "connections_num")
    checkouts = stat(pool_after, "requests_num") - stat(pool_before, "requests_num")
    if pooled:
        report.add(
            "connections",
            f"pool opened {opened} server connections for {checkouts} checkouts during the burst "
            f"(connections_num vs requests_num; totals since start {stat(pool_after, 'connections_num')} / "
            f"{stat(pool_after, 'requests_num')})",
        )
    else:
        report.add("connections", "no pool statistics (stock backend): one persistent connection per server thread")
    report.add("", f"client saw {len(seen)} distinct CONNECTION_ID()s in {len(answered)} responses")
    conn_before, conn_after, server_error = server
    if conn_before is not None and conn_after is not None:
        report.add(
            "  server view",
            f"SHOW GLOBAL STATUS 'Connections' +{conn_after - conn_before} during the burst "
            "(server-wide: other clients of this server count too)",
        )
    else:
        report.add("  server view", f"unavailable: {server_error}")
    summary["connections"] = {
        "pool_opened": opened if pooled else None,
        "pool_checkouts": checkouts if pooled else None,
        "distinct_connection_ids": len(seen),
        "server_connections_delta": None if conn_before is None or conn_after is None else conn_after - conn_before,
    }

    # -- resets
    if pooled:
        resets = stat(pool_after, "resets_num") - stat(pool_before, "resets_num")
        methods = {
            key: stat(pool_after, key) - stat(pool_before, key)
            for key in ("resets_reset_connection", "resets_change_user", "resets_reconnect", "resets_failed")
        }
        report.add("resets", f"{resets} session resets: " + ", ".join(f"{k}={v}" for k, v in methods.items()))
        summary["resets"] = {"resets_num": resets, **methods}
    else:
        report.add("resets", "none (the stock backend never resets a session)")
        summary["resets"] = None

    # -- leaks
    dirtied_at: dict[int, float] = {}
    for r in ok:
        cid = r.connection_id
        if r.kind == "dirty" and cid is not None:
            dirtied_at[cid] = min(dirtied_at.get(cid, r.received), r.received)
    sessions = [r for r in ok if r.kind == "session" and r.body is not None]
    after_dirty = 0
    leaked: list[tuple[Result, list[str]]] = []
    kinds: Counter[str] = Counter()
    for r in sessions:
        cid = r.connection_id
        if cid is not None and cid in dirtied_at and dirtied_at[cid] <= r.sent:
            after_dirty += 1
        assert r.body is not None
        problems = session_problems(r.body)
        if problems:
            leaked.append((r, problems))
            kinds.update(p.split(" =")[0].split(" (")[0] for p in problems)
    report.add(
        "leak check",
        f"{len(sessions)} /session/ responses; {after_dirty} ran on a connection that had served /dirty/ before "
        f"({len(dirtied_at)} connections served /dirty/)",
    )
    if leaked:
        report.add("  LEAKED", f"{len(leaked)} /session/ responses saw state left behind by an earlier request:")
        for what, count in kinds.most_common():
            report.add("", f"  {count:>5} x {what}")
        r, problems = leaked[0]
        report.add("  e.g.", f"connection {r.connection_id}: " + "; ".join(problems))
    else:
        report.add("", f"0 leaks: every /session/ saw a fresh session ({after_dirty} of them right after /dirty/)")
    summary["leak_check"] = {
        "sessions": len(sessions),
        "after_dirty": after_dirty,
        "dirty_connections": len(dirtied_at),
        "leaked": len(leaked),
    }

    if leaked:
        code = EXIT_LEAK
        verdict = f"LEAK: {len(leaked)} of {len(sessions)} /session/ responses saw another request's session state"
        if failed:
            verdict += f"; {len(failed)} requests failed"
    elif failed:
        code, verdict = EXIT_FAILED, f"FAIL: {len(failed)} of {len(results)} requests failed"
    elif after_dirty == 0:
        code = EXIT_INCONCLUSIVE
        verdict = "INCONCLUSIVE: no /session/ ran on a connection that had served /dirty/ (raise --requests)"
    else:
        code = EXIT_OK
        verdict = (
            f"PASS: {len(ok)}/{len(results)} requests served, no session state leaked "
            f"({after_dirty} /session/ checks on connections that had served /dirty/)"
        )
    report.add("verdict", verdict)
    summary["verdict"] = verdict
    summary["exit_status"] = code
    return code, report, summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the test project (default: %(default)s)")
    parser.add_argument("--requests", type=int, default=2000, help="requests in the burst (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=32, help="client threads (default: %(default)s)")
    parser.add_argument("--mix", default=DEFAULT_MIX, help="relative weights of the kinds (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="the server to read SHOW GLOBAL STATUS from (default: $DATABASE_URL or the project's default)",
    )
    parser.add_argument("--report", help="also write the summary as JSON to this file")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    try:
        if args.requests < 1 or args.concurrency < 1:
            raise SetupError("--requests and --concurrency must be >= 1")
        mix = parse_mix(args.mix)
        get_json(base, "/pool/", args.timeout)
        products = get_json(base, "/products/", args.timeout).get("products") or []
        product_ids = sorted(int(p["id"]) for p in products)
        if not product_ids:
            raise SetupError("the shop has no products: run `python testproject/manage.py seed_shop` first")
    except SetupError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return EXIT_SETUP

    rng = random.Random(args.seed)
    kinds = rng.choices(list(mix), weights=list(mix.values()), k=args.requests)
    plan = [(kind, rng.choice(product_ids)) for kind in kinds]

    server = ServerView(args.database_url)
    try:
        before = get_json(base, "/pool/", args.timeout)
        conn_before = server.status("Connections")
        print(
            f"loadgen: {args.requests} requests from {args.concurrency} threads against {base} "
            f"({', '.join(f'{k}={v:g}' for k, v in mix.items())})",
            flush=True,
        )
        started = time.monotonic()
        results = burst(base, plan, args.concurrency, args.timeout)
        elapsed = time.monotonic() - started
        conn_after = server.status("Connections")
        after = get_json(base, "/pool/", args.timeout)
    except SetupError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return EXIT_SETUP
    finally:
        server.close()
    code, report, summary = analyse(
        results, set(product_ids), before, after, (conn_before, conn_after, server.error), elapsed, args.concurrency
    )
    print()
    report.print()
    if args.report:
        with open(args.report, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
            f.write("\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
