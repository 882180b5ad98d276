"""The killer connection under faults (issue 12, items 7, 8 and 9), on a private server.

* The server is at ``max_connections``: the killer, opened with the pool, still kills.
* One server cannot be reached: kills to another are not delayed.
* A kill the server denies (another user's connection, error 1095) is logged once and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel.killers import killer_for
from django_mysql_pooled.cancel.scope import cancel_scope
from tests.faults.conftest import TOLERANCE, PoolTargetFactory, fill, wait_until
from tests.faults.mariadb import DATABASE, PrivateMariaDB, requires_mariadbd
from tests.faults.proxy import Proxy

pytestmark = [requires_mariadbd, pytest.mark.usefixtures("close_killers"), pytest.mark.timeout(120)]


def _sleep_under_scope(db: Any, timeout: float, seconds: float) -> QueryCancelled:
    with pytest.raises(QueryCancelled) as info, cancel_scope(db, timeout=timeout), db.cursor() as cursor:
        cursor.execute(f"SELECT SLEEP({seconds})")
    return info.value


def test_kill_goes_through_when_the_server_is_full(
    private_server: PrivateMariaDB, pool_target: PoolTargetFactory, client_kill_only: None
) -> None:
    target = pool_target({"max_size": 1})
    db = target.wrapper()
    try:
        with cancel_scope(db, timeout=5), db.cursor() as cursor:  # the first cancellable evaluation
            cursor.execute("SELECT 1")
        wait_until(lambda: len(private_server.sessions()) == 2, 15, "no killer connection beside the pool's")
        root = private_server.connect()
        root.cursor().execute("SET GLOBAL max_connections = 10")  # restored by the fixture
        root.close()
        fillers = fill(private_server)
        started = time.monotonic()
        exc = _sleep_under_scope(db, 0.3, 10)
        assert exc.args[0] == 1317 and time.monotonic() - started < 0.3 + TOLERANCE
        assert target.stats()["kills_sent"] == 1
        for conn in fillers:
            conn.close()
    finally:
        db.close()


@pytest.mark.django_db(transaction=True)
def test_unreachable_server_does_not_delay_kills_to_another(
    private_server: PrivateMariaDB, proxy: Proxy, pool_target: PoolTargetFactory, client_kill_only: None
) -> None:
    far = pool_target({"max_size": 1}, via=proxy)
    outcome: list[BaseException] = []
    started = threading.Event()

    def run_far() -> None:
        db = far.wrapper()
        try:
            db.ensure_connection()
            started.set()
            _sleep_under_scope(db, 1.0, 8)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            db.close()

    thread = threading.Thread(target=run_far)
    thread.start()
    try:
        assert started.wait(15)
        wait_until(lambda: _running(private_server, "SLEEP(8)"), 15, "the far query never started")
        with proxy.mute():  # the far server is unreachable now: its kill hangs until its timeouts
            time.sleep(1.5)  # the far deadline passed: its kill is in flight
            began = time.monotonic()
            exc = _sleep_under_scope(connection, 0.5, 5)  # the shared server, reachable
            took = time.monotonic() - began
        assert exc.args[0] == 1317 and took < 0.5 + TOLERANCE, took
    finally:
        thread.join(60)
    assert not thread.is_alive() and outcome == []


def _running(server: PrivateMariaDB, text: str) -> bool:
    conn = server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE %s AND ID != CONNECTION_ID()",
            (f"%{text}%",),
        )
        return bool(cursor.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def other_user(private_server: PrivateMariaDB) -> Iterator[Any]:
    """A session of another user, without any privilege to kill or be killed by the application user."""
    root = private_server.connect()
    try:
        root.cursor().execute("CREATE USER IF NOT EXISTS 'other'@'127.0.0.1' IDENTIFIED BY 'other-secret'")
    finally:
        root.close()
    conn = private_server.connect(user="other", password="other-secret")
    yield conn
    conn.close()


def test_denied_kill_is_logged_once_and_counted(
    private_server: PrivateMariaDB,
    pool_target: PoolTargetFactory,
    other_user: Any,
    client_kill_only: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = pool_target({"max_size": 1})
    db = target.wrapper()
    try:
        db.ensure_connection()
        raw = db.connection
        killer = killer_for(db.get_connection_params())
        if hasattr(killer, "_logged"):
            killer._logged.clear()  # another test may have been denied already
        other_id = int(other_user.thread_id())
        own = raw.thread_id
        raw.thread_id = lambda: other_id  # the scope takes another user's session for its own
        try:
            for _ in range(2):
                exc = _sleep_under_scope(db, 0.3, 1)
                assert exc.elapsed >= 0.9  # not killed: it ran its whole second
        finally:
            raw.thread_id = own
        assert target.stats().get("kills_denied", 0) == 2 and target.stats().get("kills_sent", 0) == 0
        denied = [r for r in caplog.records if "denied" in r.getMessage()]
        assert len(denied) == 1 and "1095" in denied[0].getMessage() and denied[0].levelno == logging.WARNING
    finally:
        db.close()


assert DATABASE  # the private server's database, used by pool_target
