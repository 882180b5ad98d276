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

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel import scope as scope_module
from django_mysql_pooled.cancel.killer import IO_TIMEOUT
from django_mysql_pooled.cancel.killers import all_killers
from django_mysql_pooled.cancel.scope import cancel_scope
from tests.faults.stallproxy import HoldKills
from tests.security.helpers import uncancellable_sleep

pytestmark = pytest.mark.timeout(60)

#: Seconds the proxy holds each KILL: past the killer's read timeout.
HOLD = IO_TIMEOUT + 1.5


@pytest.fixture
def proxy() -> Iterator[HoldKills]:
    settings = connections["default"].settings_dict
    held = HoldKills((settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 3306)), HOLD)
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
    session, outcome, elapsed = uncancellable_sleep(request(), HOLD)
    reused = session == victim_id
    assert not reused and outcome == "completed: ((0,),)", (
        f"request B {'reused' if reused else 'did not reuse'} A's session {victim_id}; its statement "
        f"{outcome} after {elapsed:.2f} s"
    )


def test_a_killer_connection_the_server_closed_is_replaced_without_an_unanswered_kill(
    pooled: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kill written to a killer connection the server had already closed cannot have been
    delivered: the killer sends it over a new connection, answered, and the statement's
    connection is reused as usual (not counted as unanswered, not closed)."""
    monkeypatch.setattr(scope_module._Hook, "_with_server_limit", lambda self, raw, sql: sql)
    db = pooled({"max_size": 1}, alias="sec_stale_killer")
    with pytest.raises(QueryCancelled), cancel_scope(db, timeout=0.2), db.cursor() as cursor:
        cursor.execute("SELECT SLEEP(1)")  # opens the killer, and uses it
    killer = next(k for k in all_killers() if k.connection_id is not None)
    killer_id = killer.connection_id
    assert killer_id is not None
    monkeypatch.setattr(killer, "keep_ready", lambda *args, **kwargs: None)  # nothing notices before the kill
    admin.cursor().execute(f"KILL CONNECTION {int(killer_id)}")
    time.sleep(0.1)  # the server has closed it: its socket has the EOF to read
    session = db.connection.thread_id()
    with pytest.raises(QueryCancelled), cancel_scope(db, timeout=0.2), db.cursor() as cursor:
        cursor.execute("SELECT SLEEP(1)")
    stats = db.pool.get_stats()
    assert stats.get("kills_unanswered", 0) == 0 and stats["kills_sent"] == 2, stats
    db.close()
    with db.cursor() as cursor:  # reused: nothing can still arrive for it
        assert db.connection.thread_id() == session
    db.close()


def test_a_write_completed_before_an_unanswered_kill_keeps_its_result_and_is_not_a_late_kill(
    pooled: Any, proxy: HoldKills, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write completed; the kill has not landed (it may, later): not ``kills_late``."""
    monkeypatch.setattr(scope_module._Hook, "_with_server_limit", lambda self, raw, sql: sql)
    db = pooled({"max_size": 1}, alias="sec_unanswered_write", HOST="127.0.0.1", PORT=proxy.port)
    with db.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE unanswered (v INT)")
        cursor.execute("INSERT INTO unanswered VALUES (0)")
    with cancel_scope(db, timeout=0.2), db.cursor() as cursor:
        cursor.execute("UPDATE unanswered SET v = 1 + SLEEP(1)")  # completes at 1 s; the kill is held
        assert cursor.rowcount == 1
    stats = db.pool.get_stats()
    assert stats.get("kills_unanswered", 0) == 1 and stats.get("kills_late", 0) == 0, stats
    db.close()
