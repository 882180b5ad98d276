"""The server ends pooled sessions or refuses new ones: callers never see a dead connection.

* Every idle pooled connection is killed (``KILL CONNECTION``) or dropped by a
  short ``wait_timeout``: the reset at checkout finds each one dead and the
  pool replaces it, with zero errors for the callers.
* ``max_connections`` is reached by other clients: the caller gets the
  server's own error 1040 at once, the pool keeps no slot for the connection
  it could not open, and it serves again as soon as slots free up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.faults.conftest import (
    TOLERANCE,
    TOO_MANY_CONNECTIONS,
    Clients,
    PoolTarget,
    PoolTargetFactory,
    fill,
    wait_until,
)
from tests.faults.mariadb import PrivateMariaDB, requires_mariadbd

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]

TIMEOUT = 2.0  # the pool's checkout timeout, seconds


def warm(target: PoolTarget, count: int) -> None:
    """Leave *count* connections idle in the pool (opened concurrently, then all returned)."""
    wrappers = [target.wrapper() for _ in range(count)]
    try:
        for db in wrappers:
            db.ensure_connection()
    finally:
        for db in wrappers:
            db.close()
    assert target.pool.drain(), "the return workers did not reset the connections"
    stats = target.stats()
    assert (stats["pool_size"], stats["pool_available"]) == (count, count)


def set_global(server: PrivateMariaDB, name: str, value: int) -> None:
    conn = server.connect()
    try:
        conn.cursor().execute(f"SET GLOBAL {name} = {int(value)}")
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["kill_connection", "wait_timeout"])
def test_every_idle_connection_lost_costs_the_callers_nothing(
    private_server: PrivateMariaDB, pool_target: PoolTargetFactory, figures: Callable[..., None], how: str
) -> None:
    size = 4
    target = pool_target({"max_size": size, "timeout": TIMEOUT})
    if how == "wait_timeout":
        set_global(private_server, "wait_timeout", 1)  # the private server only; restored by the fixture
    warm(target, size)
    victims = private_server.sessions()
    assert len(victims) == size
    started = time.monotonic()
    if how == "kill_connection":
        admin = private_server.connect()
        try:
            for conn_id in victims:
                admin.cursor().execute(f"KILL CONNECTION {conn_id}")
        finally:
            admin.close()
    gone = wait_until(lambda: not set(victims) & set(private_server.sessions()), 15.0, "the sessions survived")
    with Clients(target, size, pause=0.005, max_requests=25) as clients:
        clients.join(60.0)
    stats = target.stats()
    figures(
        lost_connections=len(victims),
        dropped_after_s=time.monotonic() - started if how == "wait_timeout" else gone,
        requests=len(clients.outcomes),
        errors=len(clients.errors()),
        checks_failed=stats["checks_failed"],
        connections_opened=stats["connections_num"],
        max_request_s=clients.max_duration(),
    )
    assert not clients.errors(), [o.error for o in clients.errors()][:5]
    assert len(clients.successes()) == size * 25
    # Reset when returned, alive then; the checkouts' validation finds them dead.
    assert (stats["checks_failed"], stats["connections_lost"], stats["closes_broken"]) == (size, size, size)
    assert stats["connections_num"] <= 2 * size
    assert not set(victims) & set(private_server.sessions())


@pytest.fixture
def max_connections_10(private_server: PrivateMariaDB) -> Iterator[None]:
    set_global(private_server, "max_connections", 10)
    yield  # the private_server fixture restores the default


def test_max_connections_reached_by_other_clients(
    private_server: PrivateMariaDB,
    pool_target: PoolTargetFactory,
    max_connections_10: None,
    figures: Callable[..., None],
) -> None:
    target = pool_target({"max_size": 6, "timeout": TIMEOUT})
    warm(target, 1)  # the pool keeps serving with the one connection it has
    fillers = fill(private_server)
    try:
        with Clients(target, 6, pause=0.005, max_requests=20) as full:
            full.join(60.0)
        during = target.stats()
        refused = full.errors()
        # Nothing is open but the one connection, and no slot is held for the refused ones.
        assert (during["pool_size"], during["connections_in_use"]) == (1, 0)
    finally:
        for conn in fillers:
            conn.close()
    # The server frees a slot when it has processed the client's COM_QUIT, not when close() returns.
    wait_until(lambda: len(private_server.sessions()) <= 1, 10.0, "the fillers' sessions did not end")
    freed_at = time.monotonic()
    with Clients(target, 6, pause=0.005, max_requests=20) as after:
        after.join(60.0)
    stats = target.stats()
    wait_until(
        lambda: len(private_server.sessions()) == target.stats()["pool_size"],
        10.0,
        "the pool's size differs from the sessions it has on the server",
    )
    figures(
        fillers=len(fillers),
        requests_while_full=len(full.outcomes),
        served_while_full=len(full.successes()),
        refused=len(refused),
        error_kinds=full.error_kinds(),
        max_refusal_s=max((o.duration for o in refused), default=0.0),
        pool_size_while_full=during["pool_size"],
        errors_after_freeing=len(after.errors()),
        first_success_after_freeing_s=min(o.ended for o in after.successes()) - freed_at,
        pool_size_after=stats["pool_size"],
        server_sessions_after=len(private_server.sessions()),
    )
    assert refused, "the full server refused nothing"
    assert {(o.kind, o.code) for o in refused} == {("OperationalError", TOO_MANY_CONNECTIONS)}
    assert all("Too many connections" in (o.error or "") for o in refused)
    assert max(o.duration for o in refused) <= TIMEOUT + TOLERANCE
    assert full.successes(), "the idle connection kept serving"
    assert not after.errors(), [o.error for o in after.errors()][:5]
    assert stats["pool_size"] <= 6
