#!/usr/bin/env python
"""Show slow queries killed on the server: ``cancellable(timeout=...)`` and a client disconnect.

Usage (``demo.sh`` runs both against servers it started)::

    python testproject/cancel_demo.py search --url http://127.0.0.1:8000 [--timeout 0.5]
    python testproject/cancel_demo.py disconnect --url http://127.0.0.1:8001 [--after 0.5] [--control]

``search`` asks ``GET /search/`` (a sync view, any server) for reviews
matching a regular expression that backtracks on every row (minutes for the
whole table) with ``timeout=0.5``: the view must answer 503 after about
0.5 s with the connection id of the killed query. At that deadline the
watchdog's ``KILL QUERY`` (counted in ``kills_sent``) ends the statement
(1317); the statement's own ``max_statement_time`` (MariaDB) runs half a
second longer and ends it (1969) only when no kill could be sent.

``disconnect`` needs an ASGI server (uvicorn): it opens ``GET /slow-count/``
(an async view: ``await ....cancellable().acount()``) over a raw socket,
waits until the query shows up in the server's process list, closes the
socket after ``--after`` seconds, and watches the query go: Django's ASGI
handler cancels the view's task when the client goes away, and the
cancelled task kills its query with ``KILL QUERY``. ``disconnect --control``
does the same with ``/slow-count/?cancellable=0`` and expects the opposite:
the query still running ``--grace`` seconds later (then kills it itself).

Both steps check the server itself, over a MySQLdb connection of their own
(``information_schema.PROCESSLIST``), that no statement of the request is
still running afterwards, and print the pool's ``queries_cancelled`` and
``kills_sent`` counters from ``GET /pool/``. Each request's pattern carries a
unique marker (``...|cancel-demo-<hex>``, which matches nothing) so the
query can be told apart from anything else the server runs.

A query that is still running when the step ends is killed by the script (so
the server is not left scanning for minutes). Exit status: 0 the query was
stopped on the server (``--control``: it kept running, as expected); 1 it
kept running; 3 inconclusive (the search finished before its timeout, the
query never showed up); 4 setup error (server unreachable, no reviews: run
``manage.py seed_reviews``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import time
import urllib.parse
import uuid
from collections.abc import Sequence
from typing import Any

from loadgen import DEFAULT_DATABASE_URL, Json, SetupError, get_json, request, stat

EXIT_OK = 0
EXIT_STILL_RUNNING = 1
EXIT_INCONCLUSIVE = 3
EXIT_SETUP = 4

#: The views' slow pattern (``shop.views.SLOW_PATTERN``): five words then a
#: digit. The nested quantifiers make the regular expression engine backtrack
#: for milliseconds on every body, and no body has a digit: a full scan.
SLOW_PATTERN = r"(\w+\s?){5}\d"
REVIEW_TABLE = "shop_review"

#: One processlist row: id, command, seconds, state, statement (or None).
Row = tuple[int, str, int, str, str | None]


def say(label: str, text: str = "") -> None:
    print(f"{label:<12} {text}" if text else label, flush=True)


def clip(text: str | None, width: int = 110) -> str:
    if text is None:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


class Server:
    """A plain MySQLdb connection (autocommit, no pool, no Django) to watch the server."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.database = urllib.parse.unquote(parts.path.lstrip("/")) or None
        self.target = f"{parts.hostname or '127.0.0.1'}:{parts.port or 3306}"
        try:
            import MySQLdb
        except ImportError as exc:
            raise SetupError(f"MySQLdb not importable ({exc})") from exc
        try:
            self.conn: Any = MySQLdb.connect(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 3306,
                user=urllib.parse.unquote(parts.username or "root"),
                password=urllib.parse.unquote(parts.password or ""),
                connect_timeout=5,
                autocommit=True,
            )
        except MySQLdb.Error as exc:
            raise SetupError(f"cannot connect to {self.target}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Row]:
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        return [(int(r[0]), str(r[1]), int(r[2] or 0), str(r[3] or ""), _text(r[4])) for r in rows]

    _COLUMNS = "ID, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST"

    def connection(self, connection_id: int) -> Row | None:
        """The process list row of one connection, ``None`` if it is closed."""
        rows = self._rows(f"SELECT {self._COLUMNS} WHERE ID = %s", [connection_id])
        return rows[0] if rows else None

    def running(self, marker: str) -> list[Row]:
        """Statements whose text contains *marker* (this connection's own excluded)."""
        return self._rows(
            f"SELECT {self._COLUMNS} WHERE INFO LIKE %s AND ID <> CONNECTION_ID() ORDER BY ID",
            [f"%{marker}%"],
        )

    def kill_query(self, connection_id: int) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute(f"KILL QUERY {int(connection_id)}")

    def estimate(self, pattern: str, sample: int = 200) -> tuple[int, float]:
        """(rows in the review table, milliseconds per row for *pattern* over *sample* rows)."""
        if not self.database:
            raise SetupError("DATABASE_URL names no database")
        table = f"`{self.database.replace('`', '``')}`.`{REVIEW_TABLE}`"
        with self.conn.cursor() as cursor:
            try:
                cursor.execute(f"SELECT COUNT(*) FROM {table}")
            except Exception as exc:
                raise SetupError(f"cannot count {table}: {exc} (run `manage.py migrate` and `seed_reviews`)") from exc
            total = int(cursor.fetchone()[0])
            if total == 0:
                raise SetupError(f"{table} is empty: run `python testproject/manage.py seed_reviews`")
            started = time.monotonic()
            try:
                cursor.execute(
                    f"SELECT COUNT(*) FROM (SELECT body FROM {table} ORDER BY id LIMIT %s) AS sample "
                    "WHERE body REGEXP %s",
                    [sample, pattern],
                )
                cursor.fetchall()
            except Exception as exc:
                # MySQL 8 (ICU) gives up on backtracking patterns (regexp_time_limit): this demo wants MariaDB.
                raise SetupError(f"the server refuses the slow pattern {pattern!r}: {exc}") from exc
            per_row = (time.monotonic() - started) * 1000 / sample
        return total, per_row

    def wait_gone(self, connection_id: int, marker: str, grace: float) -> tuple[bool, float, Row | None]:
        """Poll until connection *connection_id* no longer runs the marked statement.

        Returns (gone, seconds waited, the connection's last row)."""
        started = time.monotonic()
        while True:
            row = self.connection(connection_id)
            waited = time.monotonic() - started
            if row is None or row[4] is None or marker not in row[4]:
                return True, waited, row
            if waited >= grace:
                return False, waited, row
            time.sleep(0.01)


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return None if value is None else str(value)


def describe(row: Row | None) -> str:
    if row is None:
        return "closed"
    cid, command, seconds, state, info = row
    if info is None:
        return f"connection {cid} open, {command}, no statement running"
    return f"connection {cid} {command} for {seconds} s, state {state or '-'!r}: {clip(info)}"


def pool_delta(before: Json, after: Json) -> str:
    pool_before, pool_after = before.get("pool"), after.get("pool")
    if pool_after is None:
        return f"no pool statistics ({after.get('engine')}: the stock backend counts nothing)"
    return (
        f"queries_cancelled +{stat(pool_after, 'queries_cancelled') - stat(pool_before, 'queries_cancelled')}, "
        f"kills_sent +{stat(pool_after, 'kills_sent') - stat(pool_before, 'kills_sent')} "
        f"(totals in pid {after.get('pid')}: {stat(pool_after, 'queries_cancelled')} / "
        f"{stat(pool_after, 'kills_sent')})"
    )


def marked_pattern() -> tuple[str, str]:
    marker = f"cancel-demo-{uuid.uuid4().hex[:12]}"
    return marker, f"{SLOW_PATTERN}|{marker}"


def show_estimate(server: Server, pattern: str) -> None:
    total, per_row = server.estimate(pattern)
    minutes = total * per_row / 60_000
    say(
        "table",
        f"{total} reviews; this pattern costs {per_row:.2f} ms a row (measured on 200 rows): "
        f"a full scan would run ~{minutes:.0f} min",
    )


def cleanup(server: Server, marker: str) -> None:
    """Kill whatever still runs the marked statement (the step failed: do not leave it running)."""
    for row in server.running(marker):
        say("cleanup", f"KILL QUERY {row[0]} (from this script)")
        server.kill_query(row[0])


# -- search: cancellable(timeout=...) in a sync view ---------------------------


def run_search(base: str, server: Server, timeout: float, http_timeout: float) -> int:
    marker, pattern = marked_pattern()
    show_estimate(server, pattern)
    before = get_json(base, "/pool/", http_timeout)
    path = "/search/?" + urllib.parse.urlencode({"q": pattern, "timeout": timeout})
    say("request", f"GET {path}")
    sent = time.monotonic()
    status, body, error = request(base, "GET", path, None, http_timeout)
    took = time.monotonic() - sent
    try:
        if status == 200 and body is not None:
            say("response", f"HTTP 200 after {took:.3f} s: {body.get('count')} results, nothing was cancelled")
            say("verdict", f"INCONCLUSIVE: the search finished within its timeout ({timeout} s); no query was killed")
            return EXIT_INCONCLUSIVE
        if status != 503 or body is None or not isinstance(body.get("connection_id"), int):
            say("response", f"HTTP {status} after {took:.3f} s: {error or body}")
            say("verdict", "SETUP ERROR: expected HTTP 503 with the cancelled query's connection id")
            return EXIT_SETUP
        cid: int = body["connection_id"]
        say(
            "response",
            f"HTTP 503 after {took:.3f} s: QueryCancelled reason={body.get('reason')!r}, "
            f"connection {cid}, elapsed {body.get('elapsed')} s",
        )
        say("", f"server error {body.get('errno')} ({body.get('stopped_by')}): {body.get('error')}")
        # The view answered: the statement must be over. Check the server.
        gone, waited, row = server.wait_gone(cid, marker, grace=0.0)
        say("PROCESSLIST", f"(own MySQLdb connection) {describe(row)}")
        others = server.running(marker)
        say("", f"statements of this request still running anywhere: {len(others)}")
        after = get_json(base, "/pool/", http_timeout)
        say("pool", pool_delta(before, after))
        if not gone or others:
            say(
                "verdict",
                "FAIL: the search's query is still running on the server after the 503: "
                + clip(row[4] if row else None),
            )
            return EXIT_STILL_RUNNING
        elapsed = body.get("elapsed")
        say(
            "verdict",
            f"PASS: the search was cancelled at {elapsed} s (timeout {timeout} s) and its statement stopped on the "
            f"server: connection {cid} is idle, not running it",
        )
        return EXIT_OK
    finally:
        cleanup(server, marker)


# -- disconnect: an async view whose task is cancelled -------------------------


def run_disconnect(
    base: str, server: Server, after_s: float, grace: float, http_timeout: float, *, control: bool = False
) -> int:
    marker, pattern = marked_pattern()
    show_estimate(server, pattern)
    parts = urllib.parse.urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    before = get_json(base, "/pool/", http_timeout)
    query = {"q": pattern, "cancellable": "0"} if control else {"q": pattern}
    path = "/slow-count/?" + urllib.parse.urlencode(query)
    say("request", f"GET {path} (raw socket; the client goes away after {after_s} s)")
    sock = socket.create_connection((host, port), timeout=5)
    try:
        sent = time.monotonic()
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        sock.setblocking(False)
        found: Row | None = None
        reply = b""
        while time.monotonic() - sent < max(5.0, after_s):
            rows = server.running(marker)
            if rows:
                found = rows[0]
                if time.monotonic() - sent >= after_s:
                    break
            with contextlib.suppress(BlockingIOError):
                data = sock.recv(65536)
                if not data:
                    reply = reply or b"(the server closed the connection)"
                reply += data
            if reply:
                break  # the server answered or hung up: nothing left to cancel
            time.sleep(0.02)
        if found is None or reply:
            say("response", clip(reply.decode(errors="replace"), 300) if reply else "none")
            say("verdict", "INCONCLUSIVE: the query never showed up in the process list while the request was open")
            return EXIT_INCONCLUSIVE
        cid = found[0]
        say("running", f"after {time.monotonic() - sent:.3f} s: {describe(server.connection(cid))}")
    finally:
        sock.close()
    closed = time.monotonic()
    say("disconnect", f"closed the socket {closed - sent:.3f} s after sending the request")
    try:
        gone, waited, row = server.wait_gone(cid, marker, grace)
        if gone:
            say(
                "PROCESSLIST",
                f"(own MySQLdb connection) the statement was gone {waited * 1000:.0f} ms after the disconnect",
            )
        else:
            say("PROCESSLIST", f"(own MySQLdb connection) {waited:.1f} s after the disconnect it still runs")
        say("", describe(row))
        stats = get_json(base, "/pool/", http_timeout)
        deadline = time.monotonic() + 2.0
        while (
            gone
            and stats.get("pool") is not None
            and stat(stats.get("pool"), "queries_cancelled") <= stat(before.get("pool"), "queries_cancelled")
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)  # the counter moves when the view's thread has raised
            stats = get_json(base, "/pool/", http_timeout)
        say("pool", pool_delta(before, stats))
        if control:
            if gone:
                say("verdict", "UNEXPECTED: without cancellable() the query stopped too (something else killed it?)")
                return EXIT_INCONCLUSIVE
            say(
                "verdict",
                f"CONTROL, as expected: without cancellable() the query was still running on connection {cid} "
                f"{grace:g} s after the client went away (this script kills it now)",
            )
            return EXIT_OK
        if not gone:
            say(
                "verdict",
                f"FAIL: {grace:g} s after the client went away the query still runs on connection {cid} "
                "(the task cancellation did not kill it)",
            )
            return EXIT_STILL_RUNNING
        say(
            "verdict",
            f"PASS: the client went away after {closed - sent:.2f} s and the server's query on connection {cid} "
            f"was killed {waited * 1000:.0f} ms later (it would have run for minutes)",
        )
        return EXIT_OK
    finally:
        cleanup(server, marker)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("step", choices=["search", "disconnect"], help="which demonstration to run")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the test project (default: %(default)s)")
    parser.add_argument("--timeout", type=float, default=0.5, help="search: cancellable(timeout=) (default: 0.5)")
    parser.add_argument("--after", type=float, default=0.5, help="disconnect: seconds before the client goes away")
    parser.add_argument(
        "--grace", type=float, default=None, help="disconnect: seconds the query has to stop (default: 5; --control: 2)"
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="disconnect: ask /slow-count/?cancellable=0 and expect the query to keep running (then kill it)",
    )
    parser.add_argument("--http-timeout", type=float, default=30.0, help="seconds per HTTP request (default: 30)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
        help="the server to watch (default: $DATABASE_URL or the project's default)",
    )
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    try:
        server = Server(args.database_url)
    except SetupError as exc:
        print(f"cancel_demo: {exc}", file=sys.stderr)
        return EXIT_SETUP
    try:
        if args.step == "search":
            return run_search(base, server, args.timeout, args.http_timeout)
        grace = args.grace if args.grace is not None else (2.0 if args.control else 5.0)
        return run_disconnect(base, server, args.after, grace, args.http_timeout, control=args.control)
    except SetupError as exc:
        print(f"cancel_demo: {exc}", file=sys.stderr)
        say("verdict", f"SETUP ERROR: {exc}")
        return EXIT_SETUP
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
