"""ASGI: a thousand concurrent requests to async views under uvicorn, one pool per process.

Django runs each ASGI request's synchronous code (the ORM, whether called
through ``sync_to_async`` or the async ORM methods) in a thread of its own,
so a request checks a connection out in that thread and gives it back when
Django closes the response. The app (:mod:`tests.faults.asgi_app`) is served
by uvicorn in a subprocess on 127.0.0.1, on a database of its own on the
private server; while a thousand requests run at once, the server's
``PROCESSLIST`` is sampled: the process never holds more than ``max_size``
sessions, and once the load is over none is checked out, the sessions left
are the pool's idle ones, and none survives the process.

The contrast (Django ticket #33497): the stock backend with persistent
connections (``CONN_MAX_AGE = None``) opens a connection per request thread
and never reuses one, so a hundred requests open a hundred sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.conftest import percentile, wait_until
from tests.faults.mariadb import PASSWORD, USER, PrivateMariaDB, requires_mariadbd

pytestmark = [requires_mariadbd, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
DATABASE = "dmp_asgi"
MAX_SIZE = 8
REQUESTS = 1000
STOCK_REQUESTS = 100  # the stock backend opens one session per request: stay under max_connections (151)
REQUEST_TIMEOUT = 60.0  # seconds, per request


# -- the server process ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Uvicorn:
    """``uvicorn`` serving the app in a subprocess; :meth:`stop` ends it by PID."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.log = log
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "django.core.asgi:get_asgi_application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--lifespan",
            "off",
            "--no-access-log",
            "--log-level",
            "warning",
            "--backlog",
            "2048",
        ]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env={**os.environ, **env, "DJANGO_SETTINGS_MODULE": "tests.faults.asgi_settings"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until ``/pool/`` answers; return its JSON."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"uvicorn exited ({self.process.returncode}): {self.log_tail()}"
            try:
                status, body = asyncio.run(get(self.port, "/pool/"))
            except OSError as exc:
                last = exc
                time.sleep(0.05)
                continue
            assert status == 200, (status, body[:500])
            answer: dict[str, Any] = json.loads(body)
            return answer
        raise AssertionError(f"uvicorn did not answer within {timeout} s ({last}): {self.log_tail()}")

    def pool(self) -> dict[str, Any]:
        status, body = asyncio.run(get(self.port, "/pool/"))
        assert status == 200, (status, body[:500])
        answer: dict[str, Any] = json.loads(body)
        return answer

    def stop(self) -> None:
        """``SIGTERM`` (graceful), then ``SIGKILL`` after 20 s; idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(20.0)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


# -- the client -----------------------------------------------------------------------


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return bytes(out)


async def get(port: int, path: str) -> tuple[int, bytes]:
    """``GET`` *path* over HTTP/1.1 (``Connection: close``); return the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    if any(line.lower() == b"transfer-encoding: chunked" for line in lines[1:]):
        body = _dechunk(body)
    return status, body


async def load(port: int, count: int) -> list[tuple[int, dict[str, Any] | str, float]]:
    """*count* concurrent ``GET /item/<n>/``: ``(status, JSON or error, seconds)`` each."""

    async def one(n: int) -> tuple[int, dict[str, Any] | str, float]:
        started = time.monotonic()
        try:
            status, body = await asyncio.wait_for(get(port, f"/item/{n}/"), REQUEST_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            return 0, repr(exc), time.monotonic() - started
        elapsed = time.monotonic() - started
        if status != 200:
            return status, body[:300].decode(errors="replace"), elapsed
        return status, json.loads(body), elapsed

    return await asyncio.gather(*(one(n) for n in range(count)))


class SessionSampler:
    """Counts the application user's sessions on the server every few milliseconds, in a thread."""

    def __init__(self, server: PrivateMariaDB, interval: float = 0.01, max_seconds: float = 170.0) -> None:
        self.server, self.interval, self.max_seconds = server, interval, max_seconds
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faults-asgi-sampler", daemon=True)

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10.0)
        assert not self._thread.is_alive(), "the sampler did not stop"

    def _run(self) -> None:
        conn = self.server.connect()
        try:
            cursor = conn.cursor()
            ends = time.monotonic() + self.max_seconds
            while not self._stop.is_set() and time.monotonic() < ends:
                cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = %s", (USER,))
                self.samples.append(int(cursor.fetchone()[0]))
                self._stop.wait(self.interval)
        finally:
            conn.close()

    @property
    def peak(self) -> int:
        return max(self.samples, default=0)


# -- fixtures -------------------------------------------------------------------------


@pytest.fixture
def asgi_database(private_server: PrivateMariaDB) -> Iterator[dict[str, str]]:
    """A database of the app's own on the private server, with the test app's table; the server's environment."""
    conn = private_server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
        cursor.execute(f"CREATE DATABASE `{DATABASE}`")
        cursor.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{USER}'@'127.0.0.1'")
        cursor.execute(
            f"CREATE TABLE `{DATABASE}`.testapp_item (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
            "name VARCHAR(100) NOT NULL, value INT NOT NULL) ENGINE=InnoDB"
        )
    finally:
        conn.close()
    yield {
        "DMP_ASGI_HOST": private_server.host,
        "DMP_ASGI_PORT": str(private_server.port),
        "DMP_ASGI_USER": USER,
        "DMP_ASGI_PASSWORD": PASSWORD,
        "DMP_ASGI_NAME": DATABASE,
        "DMP_ASGI_MAX_SIZE": str(MAX_SIZE),
    }
    conn = private_server.connect()
    try:
        conn.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    finally:
        conn.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Uvicorn]]:
    """``serve(env)``: start uvicorn on the app; every server started is stopped by PID at the end."""
    started: list[Uvicorn] = []

    def start(env: dict[str, str]) -> Uvicorn:
        server = Uvicorn(tmp_path / f"uvicorn-{len(started)}.log", env)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def rows(server: PrivateMariaDB) -> int:
    conn = server.connect(db=DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute("SELECT COUNT(*) FROM testapp_item")
        return int(cursor.fetchone()[0])
    finally:
        conn.close()


# -- the tests ------------------------------------------------------------------------


def test_thousand_concurrent_asgi_requests_stay_within_max_size(
    private_server: PrivateMariaDB,
    asgi_database: dict[str, str],
    serve: Callable[..., Uvicorn],
    figures: Callable[..., None],
) -> None:
    app = serve(asgi_database)
    assert app.wait_ready()["pool"] is None  # no request has touched the database yet
    with SessionSampler(private_server) as sampler:
        started = time.monotonic()
        results = asyncio.run(load(app.port, REQUESTS))
        elapsed = time.monotonic() - started
        time.sleep(0.1)
    stats = app.pool()["pool"]
    failures = [(status, body) for status, body, _ in results if status != 200]
    ids = {body["connection_id"] for status, body, _ in results if status == 200 and isinstance(body, dict)}
    latencies = [seconds for _, _, seconds in results]
    sessions_after_load = len(private_server.sessions())
    app.stop()
    wait_until(lambda: not private_server.sessions(), 10.0, "sessions survived the server process")
    figures(
        requests=REQUESTS,
        max_size=MAX_SIZE,
        failures=len(failures),
        load_s=elapsed,
        latency_p50_s=percentile(latencies, 0.5),
        latency_max_s=max(latencies),
        peak_server_sessions=sampler.peak,
        samples=len(sampler.samples),
        distinct_connection_ids=len(ids),
        checkouts=stats["requests_num"],
        queued=stats["requests_queued"],
        pool_timeouts=stats["requests_timeouts"],
        connections_opened=stats["connections_num"],
        in_use_after_load=stats["connections_in_use"],
        pool_size_after_load=stats["pool_size"],
        server_sessions_after_load=sessions_after_load,
        rows_written=rows(private_server),
    )
    assert not failures, failures[:5]
    assert sampler.peak <= MAX_SIZE, f"{sampler.peak} sessions at once with max_size={MAX_SIZE}"
    assert len(ids) <= MAX_SIZE
    assert stats["requests_num"] == REQUESTS, "one checkout per request"
    assert stats["connections_in_use"] == 0
    assert stats["pool_size"] <= MAX_SIZE and stats["connections_num"] <= MAX_SIZE
    assert sessions_after_load == stats["pool_size"], "the server's sessions are the pool's idle connections"
    assert rows(private_server) == REQUESTS


def test_stock_backend_with_persistent_connections_opens_one_session_per_request(
    private_server: PrivateMariaDB,
    asgi_database: dict[str, str],
    serve: Callable[..., Uvicorn],
    figures: Callable[..., None],
) -> None:
    """The contrast (Django ticket #33497): ``CONN_MAX_AGE = None`` under ASGI reuses nothing."""
    app = serve({**asgi_database, "DMP_ASGI_STOCK": "1"})
    app.wait_ready()
    with SessionSampler(private_server) as sampler:
        results = asyncio.run(load(app.port, STOCK_REQUESTS))
        time.sleep(0.1)
    failures = [(status, body) for status, body, _ in results if status != 200]
    ids = {body["connection_id"] for status, body, _ in results if status == 200 and isinstance(body, dict)}
    sessions_after_load = len(private_server.sessions())
    app.stop()
    wait_until(lambda: not private_server.sessions(), 10.0, "sessions survived the server process")
    figures(
        requests=STOCK_REQUESTS,
        failures=len(failures),
        peak_server_sessions=sampler.peak,
        distinct_connection_ids=len(ids),
        server_sessions_after_load=sessions_after_load,
    )
    assert not failures, failures[:5]
    assert len(ids) == STOCK_REQUESTS, "every request opened a connection of its own"
    assert sampler.peak > MAX_SIZE
