"""``KILL QUERY`` in a pool with several hosts goes to the host that runs the query (issue 14, item 4).

Two private servers behind one alias (``HOST: "a:port,b:port"``). Without a
killer per host, the kill of a query on the second host would go to the
first (the alias's connection parameters name it): refused there by the
server-identity check when the first host is up, or not sent at all when it
is down; either way the query runs on. Only ``KILL QUERY`` can stop it here
(``client_kill_only``: no server-side limit).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from django_mysql_pooled import identity
from django_mysql_pooled.cancel.killers import host_killer
from django_mysql_pooled.cancel.scope import cancel_scope
from django_mysql_pooled.errors import QueryCancelled
from tests.faults.conftest import TOLERANCE, PoolTarget, PoolTargetFactory, kills_executed, wait_until
from tests.faults.mariadb import PrivateMariaDB, requires_mariadbd

pytestmark = [requires_mariadbd, pytest.mark.usefixtures("close_killers"), pytest.mark.timeout(180)]

INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED: our KILL QUERY landed
#: Seconds a query sleeps unless killed: far longer than any bound below.
LONG = 20


def two_hosts(pool_target: PoolTargetFactory, first: PrivateMariaDB, second: PrivateMariaDB, **pool: Any) -> PoolTarget:
    """An alias whose ``HOST`` lists *first* then *second*."""
    target = pool_target({"max_size": 2, "min_size": 0, **pool})
    target.settings.update(HOST=f"{first.host}:{first.port},{second.host}:{second.port}", PORT="")
    return target


def sleep_cancelled(db: Any, timeout: float) -> tuple[QueryCancelled, float]:
    """Run a long ``SLEEP`` under a *timeout* scope; return its error and how long it took."""
    started = time.monotonic()
    with pytest.raises(QueryCancelled) as info, cancel_scope(db, timeout=timeout), db.cursor() as cursor:
        cursor.execute(f"SELECT SLEEP({LONG})")
    return info.value, time.monotonic() - started


def test_the_kill_follows_a_failover_to_the_second_host(
    private_server: PrivateMariaDB,
    second_server: PrivateMariaDB,
    pool_target: PoolTargetFactory,
    client_kill_only: None,
    figures: Any,
) -> None:
    target = two_hosts(pool_target, private_server, second_server)
    private_server.stop()  # the first host is down (restarted by the fixture)
    db: Any = target.wrapper()
    try:
        db.ensure_connection()
        assert identity.address_of(db.connection) == (second_server.host, second_server.port)
        before = kills_executed(second_server)
        exc, elapsed = sleep_cancelled(db, 0.5)
        figures(elapsed=elapsed)
        assert exc.args[0] == INTERRUPTED and not exc.completed, exc
        assert elapsed < 0.5 + TOLERANCE
        assert kills_executed(second_server) == before + 1
        wait_until(lambda: target.stats().get("kills_sent", 0) == 1, 10, "the kill was not counted")
        assert target.stats().get("kills_failed", 0) == 0
        with db.cursor() as cursor:  # the session still serves
            cursor.execute("SELECT 1")
    finally:
        db.close()


def test_each_host_kills_its_own_queries(
    private_server: PrivateMariaDB,
    second_server: PrivateMariaDB,
    pool_target: PoolTargetFactory,
    client_kill_only: None,
    figures: Any,
) -> None:
    """``balance``: one connection on each host, both queries cancelled at once, each by its host's killer."""
    target = two_hosts(pool_target, private_server, second_server, policy="balance")
    connected = [threading.Event(), threading.Event()]
    go = threading.Event()
    results: dict[int, dict[str, Any]] = {0: {}, 1: {}}

    def client(i: int) -> None:
        db: Any = target.wrapper()
        try:
            db.ensure_connection()
            results[i]["address"] = identity.address_of(db.connection)
            connected[i].set()
            assert go.wait(30)
            results[i]["error"], results[i]["elapsed"] = sleep_cancelled(db, 1.0)
        finally:
            db.close()

    threads = [threading.Thread(target=client, args=(i,), name=f"hosts-client-{i}") for i in (0, 1)]
    for thread, ready in zip(threads, connected, strict=True):
        thread.start()  # one after the other: balance puts the second connection on the other host
        assert ready.wait(30)
    before = [kills_executed(private_server), kills_executed(second_server)]
    go.set()
    for thread in threads:
        thread.join(LONG + 30)
    figures(elapsed_first=results[0]["elapsed"], elapsed_second=results[1]["elapsed"])
    assert [results[i]["address"] for i in (0, 1)] == [
        (private_server.host, private_server.port),
        (second_server.host, second_server.port),
    ]
    for i in (0, 1):
        assert results[i]["error"].args[0] == INTERRUPTED, results[i]["error"]
        assert results[i]["elapsed"] < 1.0 + TOLERANCE
    assert [kills_executed(private_server), kills_executed(second_server)] == [before[0] + 1, before[1] + 1]
    wait_until(lambda: target.stats().get("kills_sent", 0) == 2, 10, "the kills were not counted")
    assert target.stats().get("kills_wrong_server", 0) == 0


def test_the_pool_keeps_the_second_hosts_killer_ready(
    private_server: PrivateMariaDB, second_server: PrivateMariaDB, pool_target: PoolTargetFactory
) -> None:
    """The killer of the host in use is opened with the first cancellable evaluation and reopened by
    the pool's maintenance when the server closes it (not at the next kill, when the server may be full)."""
    target = two_hosts(pool_target, private_server, second_server)
    private_server.stop()
    db: Any = target.wrapper()
    try:
        with cancel_scope(db, timeout=5), db.cursor() as cursor:
            cursor.execute("SELECT 1")
        params = db.get_connection_params()
        killer = host_killer(params, (second_server.host, second_server.port))
        wait_until(lambda: killer.connection_id is not None, 10, "the second host's killer was not opened")
        # The first host's killer is left alone: no connection of the evaluation was on it.
        assert not host_killer(params, (private_server.host, private_server.port)).used
        first = killer.connection_id
        assert killer.identity is not None and killer.identity.endswith(f"/{second_server.port}")
        root = second_server.connect()
        try:
            root.cursor().execute(f"KILL CONNECTION {first}")
        finally:
            root.close()
        wait_until(
            lambda: killer.connection_id not in (None, first), 10, "the pool did not reopen the second host's killer"
        )
    finally:
        db.close()
