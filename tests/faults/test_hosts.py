"""Several hosts with the private server as one of them: read-only servers, 1290, a crash and the way back.

Only the private server's globals change here (``read_only``), always put
back; the shared server is the other host where a live one is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import OperationalError

from django_mysql_pooled.pool.hosts import DOWN, UP
from tests.conftest import WrapperFactory
from tests.faults.conftest import PoolTargetFactory, fill
from tests.faults.mariadb import PrivateMariaDB, requires_mariadbd
from tests.hostutil import scalar, state, wait_for
from tests.session.test_hosts_real import SHARED, closed_port

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]


@pytest.fixture
def read_only(private_server: PrivateMariaDB) -> Iterator[Callable[[bool], None]]:
    """``read_only(True)``: ``SET GLOBAL read_only`` on the private server (put back to 0 afterwards)."""

    def set_to(value: bool) -> None:
        conn = private_server.connect()
        try:
            conn.cursor().execute(f"SET GLOBAL read_only = {int(value)}")
        finally:
            conn.close()

    yield set_to
    set_to(False)


@pytest.fixture
def private_then_shared(private_server: PrivateMariaDB, pooled: WrapperFactory) -> Callable[..., Any]:
    """``make(**pool)``: wrappers of one alias listing the private server, then the shared one (as root,
    the test database created on both)."""
    alias = f"private_then_shared_{private_server.port}"
    name = pooled({}, alias="probe_settings").settings_dict["NAME"]
    conn = private_server.connect()
    try:
        conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{name}`")
    finally:
        conn.close()
    label = f"{private_server.host}:{private_server.port}"

    def make(**pool: Any) -> Any:
        return pooled({"max_size": 2, **pool}, alias=alias, HOST=f"{label},{SHARED}", PORT="")

    return make


@pytest.mark.django_db(transaction=True)
def test_require_primary_skips_a_read_only_server_and_fails_back_once_it_is_writable(
    private_then_shared: Callable[..., Any], private_server: PrivateMariaDB, read_only: Callable[[bool], None]
) -> None:
    private = f"{private_server.host}:{private_server.port}"
    read_only(True)
    db = private_then_shared(require_primary=True, host_backoff=0.1, host_backoff_max=0.2)
    assert scalar(db, "SELECT @@port") == 3306
    values = state(db, private)
    assert values["state"] == DOWN
    assert values["reason"] == (
        f"{private} is read-only (@@read_only=1: a replica or a demoted primary) and "
        "OPTIONS['pool']['require_primary'] is set"
    )
    assert db.pool.get_stats()["failovers"] == 1
    read_only(False)
    wait_for(lambda: state(db, private)["state"] == UP, "the probe to find the private server writable")
    db.close()  # to the shared server, while an earlier host is up: retired
    assert db.pool.get_stats()["closes_failback"] == 1
    assert scalar(db, "SELECT @@port") == private_server.port


@pytest.mark.parametrize("require_primary", [True, False])
def test_a_write_refused_by_a_server_turned_read_only(
    pool_target: PoolTargetFactory,
    private_server: PrivateMariaDB,
    read_only: Callable[[bool], None],
    require_primary: bool,
) -> None:
    private = f"{private_server.host}:{private_server.port}"
    target = pool_target({"max_size": 2, "require_primary": require_primary})
    target.settings.update(HOST=f"{private},127.0.0.1:{closed_port()}", PORT="")
    db = target.wrapper()
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS hosts_read_only (id INT)")
    try:
        read_only(True)  # the primary is demoted under a connection in use
        with pytest.raises(OperationalError) as refused, db.cursor() as cursor:
            cursor.execute("INSERT INTO hosts_read_only VALUES (1)")
        assert refused.value.args[0] == 1290
        if require_primary:  # the host is probed: the probe's connection finds @@read_only = 1
            wait_for(lambda: state(db, private)["state"] == DOWN, "the probe to find the server read-only")
            assert state(db, private)["reason"] == (
                f"{private} is read-only (@@read_only=1: a replica or a demoted primary) and "
                "OPTIONS['pool']['require_primary'] is set"
            )
        db.close()
        assert target.pool.drain()
        stats = target.stats()
        if require_primary:  # closed at checkin, never reused
            assert (stats["closes_broken"], stats["pool_size"]) == (1, 0)
            wait_for(lambda: private_server.sessions() == [], "the connection to be closed")
        else:  # the statement's own error: the connection stays, the host is not even probed
            assert (stats["closes_broken"], stats["pool_available"]) == (0, 1)
            assert state(db, private)["state"] == UP and not target.pool.hosts.hosts[0].suspected  # type: ignore[union-attr]
    finally:
        read_only(False)
        db.close()
        with target.wrapper().cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS hosts_read_only")


@pytest.mark.django_db(transaction=True)
def test_a_crashed_host_is_failed_over_probed_and_failed_back(
    private_then_shared: Callable[..., Any], private_server: PrivateMariaDB, figures: Callable[..., None]
) -> None:
    private = f"{private_server.host}:{private_server.port}"
    db = private_then_shared(host_backoff=0.2, host_backoff_max=0.5)
    assert scalar(db, "SELECT @@port") == private_server.port
    db.close()
    private_server.kill()
    started = time.monotonic()
    assert scalar(db, "SELECT @@port") == 3306  # the idle connection is dead: replaced on the shared server
    failed_over = time.monotonic() - started
    assert state(db, private)["state"] != UP
    stats = db.pool.get_stats()
    assert (stats["failovers"], stats["checks_failed"]) == (1, 1)
    ready = private_server.start()
    wait_for(lambda: state(db, private)["state"] == UP, "the probe to bring the private server back")
    back = time.monotonic() - ready
    db.close()  # retired: the private server is earlier and up
    assert scalar(db, "SELECT @@port") == private_server.port
    assert db.pool.get_stats()["closes_failback"] == 1
    assert int(state(db, private)["connections_errors"]) >= 1  # the checkout's connect (and probes while it started)
    figures(failover_s=failed_over, back_after_restart_s=back)
    assert failed_over < 5.0


def test_a_full_server_keeps_serving_from_the_connections_the_pool_has(
    pool_target: PoolTargetFactory, private_server: PrivateMariaDB
) -> None:
    private = f"{private_server.host}:{private_server.port}"
    target = pool_target({"max_size": 4, "timeout": 2.0})
    target.settings.update(HOST=f"{private},127.0.0.1:{closed_port()}", PORT="")
    held, other = target.wrapper(), target.wrapper()
    held.ensure_connection()
    other.ensure_connection()
    other.close()  # idle
    target.pool.drain()
    root = private_server.connect()
    root.cursor().execute("SET GLOBAL max_connections = 10")  # restored by the fixture
    fillers = fill(private_server)
    try:
        third = target.wrapper()
        third.ensure_connection()  # the idle one
        with pytest.raises(OperationalError) as full:
            target.wrapper().ensure_connection()  # a connect: 1040, then the dead port
        assert full.value.args[0] in (1040, 2002, 2003)
        third.close()
        held.close()
        target.pool.drain()
        fillers += fill(private_server)  # other clients take whatever slot the pool gives back
        again = target.wrapper()
        assert scalar(again, "SELECT 1") == 1, "no connection: the pool closed the ones the full server had given"
        assert target.stats().get("closes_host_down", 0) == 0
        again.close()
    finally:
        for conn in fillers:
            conn.close()
        root.close()
