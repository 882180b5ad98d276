"""A server restart under load: callers see errors only while it is down, and no acknowledged write is lost.

Eight threads, each with its own wrapper of one alias (one pool of four
connections), insert rows through the pool while the private server is shut
down (or killed) and started again. Every connection the pool held dies with
the server; the reset at checkout must catch each of them, so requests that
start once the server accepts connections again all succeed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.faults.conftest import TOLERANCE, Clients, PoolTarget, PoolTargetFactory, Work
from tests.faults.mariadb import DATABASE, PrivateMariaDB, requires_mariadbd

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]

THREADS = 8
MAX_SIZE = 4
TIMEOUT = 2.0  # the pool's checkout timeout, seconds
DOWN_FOR = 1.0  # seconds the server stays down


@pytest.fixture
def writes(private_server: PrivateMariaDB) -> Iterator[str]:
    """An empty InnoDB table ``(client, seq)`` in the private server's database."""
    conn = private_server.connect(db=DATABASE)
    cursor = conn.cursor()
    cursor.execute("DROP TABLE IF EXISTS writes")
    cursor.execute("CREATE TABLE writes (client INT, seq INT, PRIMARY KEY (client, seq)) ENGINE=InnoDB")
    conn.close()
    yield "writes"


def insert(table: str) -> Work:
    def work(db: Any, client: int, seq: int) -> None:
        with db.cursor() as cursor:
            cursor.execute(f"INSERT INTO {table} (client, seq) VALUES (%s, %s)", [client, seq])

    return work


def stored_rows(server: PrivateMariaDB, table: str) -> set[tuple[int, int]]:
    conn = server.connect(db=DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT client, seq FROM {table}")
        return {(int(client), int(seq)) for client, seq in cursor.fetchall()}
    finally:
        conn.close()


@pytest.mark.parametrize("crash", [False, True], ids=["shutdown", "sigkill"])
def test_pool_recovers_from_a_server_restart_under_load(
    private_server: PrivateMariaDB,
    pool_target: PoolTargetFactory,
    writes: str,
    figures: Callable[..., None],
    crash: bool,
) -> None:
    target: PoolTarget = pool_target({"max_size": MAX_SIZE, "timeout": TIMEOUT})
    with Clients(target, THREADS, insert(writes), pause=0.005) as clients:
        clients.wait_for_successes(100)
        down_at = time.monotonic()
        ready_at = private_server.restart(crash=crash, down_for=DOWN_FOR)
        recovered_at = clients.recovered_at(ready_at)
        time.sleep(1.0)  # keep the load on after the recovery
    stats = target.stats()
    acknowledged = {(o.client, o.seq) for o in clients.successes()}
    stored = stored_rows(private_server, writes)
    late_errors = clients.errors(started_after=ready_at)
    figures(
        outage_s=ready_at - down_at,
        errors_during_outage=len(clients.errors()) - len(late_errors),
        error_kinds=clients.error_kinds(),
        errors_after_ready=len(late_errors),
        recovery_s=recovered_at - ready_at,
        max_request_s=clients.max_duration(),
        requests=len(clients.outcomes),
        connections_opened=stats["connections_num"],
        connection_errors=stats["connections_errors"],
        resets_failed=stats["resets_failed"],
        pool_timeouts=stats["requests_timeouts"],
        acknowledged_writes=len(acknowledged),
        lost_writes=len(acknowledged - stored),
        unacknowledged_but_stored=len(stored - acknowledged),
    )
    assert not late_errors, f"errors after the server was back: {[o.error for o in late_errors][:5]}"
    assert recovered_at - ready_at <= 1.0 + TOLERANCE
    assert clients.max_duration() <= TIMEOUT + TOLERANCE
    assert acknowledged <= stored, f"acknowledged writes lost: {sorted(acknowledged - stored)[:10]}"
    assert stats["pool_size"] <= MAX_SIZE
    assert stats["connections_in_use"] == 0
