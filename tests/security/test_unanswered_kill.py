"""A ``KILL QUERY`` whose answer was lost may still land: its session never serves another checkout.

The killer's connection fails after it wrote ``KILL QUERY <id>``: here a proxy
holds the kill longer than the killer's read timeout and then delivers it; in
production, a network that loses the answer, or a server that stalls. The
killer cannot know whether the server got it. It used to count that as "not
sent" (``kills_failed``): the statement's connection went back to the pool as
usual, and the kill, arriving later, ended the next checkout's statement (a
request that never asked to be cancelled). Now it is ``kills_unanswered`` and
the connection is closed at checkin instead of reused.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError, connections

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel import scope as scope_module
from django_mysql_pooled.cancel.killer import IO_TIMEOUT
from django_mysql_pooled.cancel.killers import all_killers
from django_mysql_pooled.cancel.scope import cancel_scope

pytestmark = pytest.mark.timeout(60)

#: Seconds the proxy holds each KILL: past the killer's read timeout.
HOLD = IO_TIMEOUT + 1.5


class HoldKills:
    """A loopback proxy to the test server that forwards everything, but holds each
    ``COM_QUERY`` starting ``KILL`` for :data:`HOLD` seconds before passing it on."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port: int = self.listener.getsockname()[1]
        self.held = 0
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_client and len(data) > 9 and data[4] == 0x03 and data[5:9].upper() == b"KILL":
                self.held += 1
                time.sleep(HOLD)  # then delivered: the server runs it, whoever waits for the answer
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.fixture
def proxy() -> Iterator[HoldKills]:
    settings = connections["default"].settings_dict
    held = HoldKills((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 3306)))
    yield held
    for killer in all_killers():
        killer.close()
    held.close()


def test_a_kill_whose_answer_was_lost_never_reaches_the_next_checkout(
    pooled: Any, proxy: HoldKills, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No server-side limit: the watchdog's kill is what stops the statement.
    monkeypatch.setattr(scope_module._Hook, "_with_server_limit", lambda self, raw, sql: sql)

    def request() -> Any:
        return pooled({"max_size": 1}, alias="sec_unanswered_kill", HOST="127.0.0.1", PORT=proxy.port)

    # Request A: its deadline passes at 0.2 s; the kill is written then and held by the proxy;
    # the killer's read times out at ~2.2 s (and again on its retry over a new connection);
    # each kill reaches the server 3.5 s after it was written, while request B runs.
    request_a = request()
    with pytest.raises(QueryCancelled), cancel_scope(request_a, timeout=0.2), request_a.cursor() as cursor:
        cursor.execute("SELECT SLEEP(1)")
    victim_id = request_a.connection.thread_id()
    assert proxy.held >= 1  # (two when the killer retried on a new connection)
    stats = request_a.pool.get_stats()
    assert stats.get("kills_unanswered", 0) == 1 and stats.get("kills_failed", 0) == 0, stats
    request_a.close()  # back to the pool (max_size=1: a reused session would be A's)

    # Request B, not cancellable, runs while the held kill arrives.
    request_b = request()
    started = time.monotonic()
    with request_b.cursor() as cursor:
        reused = request_b.connection.thread_id() == victim_id
        try:
            cursor.execute(f"SELECT SLEEP({HOLD})")
            outcome = f"completed: {cursor.fetchall()}"
        except OperationalError as exc:
            outcome = f"failed: {exc}"
    elapsed = time.monotonic() - started
    request_b.close()
    assert not reused and outcome == "completed: ((0,),)", (
        f"request B {'reused' if reused else 'did not reuse'} A's session {victim_id}; its statement "
        f"{outcome} after {elapsed:.2f} s"
    )
