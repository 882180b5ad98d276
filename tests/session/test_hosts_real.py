"""Several hosts against the real server: the shared server beside a loopback port nothing listens on.

A refused connect is what a stopped server looks like from here (2002/2003
at once), so these tests need no second server; ``tests/faults/test_hosts.py``
uses the private one for what must change a server's globals (read_only).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError

from django_mysql_pooled import CancelToken, QueryCancelled, identity
from django_mysql_pooled.cancel.scope import cancel_scope
from django_mysql_pooled.pool.hosts import DOWN, UP
from tests.conftest import WrapperFactory
from tests.hostutil import scalar, wait_for
from tests.hostutil import state as host

SHARED = "127.0.0.1:3306"
REFUSED = (2002, 2003)  # nothing listening (Connector/C says 2002 for TCP too)
REFUSED_PREFIXES = tuple(f"({code})" for code in REFUSED)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def dead() -> str:
    return f"127.0.0.1:{closed_port()}"


@pytest.fixture
def shared_first(pooled: WrapperFactory, dead: str) -> Callable[..., Any]:
    """``shared_first(**pool)``: a wrapper of an alias listing the shared server, then the dead port."""
    alias = f"hostsreal{id(dead)}"

    def make(**pool: Any) -> Any:
        return pooled({"max_size": 4, **pool}, alias=alias, HOST=f"{SHARED},{dead}", PORT="")

    return make


def test_a_checkout_fails_over_from_a_dead_host_to_the_next(pooled: WrapperFactory, dead: str) -> None:
    db = pooled({"max_size": 2}, HOST=f"{dead},{SHARED}", PORT="")
    assert scalar(db, "SELECT @@port") == 3306
    assert identity.address_of(db.connection) == ("127.0.0.1", 3306)
    stats = db.pool.get_stats()  # type: ignore[attr-defined]
    assert (stats["failovers"], stats["connections_num"], stats["connections_errors"]) == (1, 1, 0)
    first = host(db, dead)
    assert (first["state"], first["connections_errors"], first["host_marked_down"], first["failovers"]) == (
        DOWN,
        1,
        1,
        1,
    )
    assert str(first["reason"]).startswith(REFUSED_PREFIXES)
    assert f"(database '{db.alias}' at {dead})" in str(first["reason"])
    second = host(db, SHARED)
    assert (second["state"], second["pool_size"], second["connections_in_use"]) == (UP, 1, 1)
    db.close()
    assert (host(db, SHARED)["pool_available"], host(db, dead)["pool_size"]) == (1, 0)


def test_the_probe_keeps_failing_on_the_dead_host_and_its_backoff_grows_to_the_cap(
    pooled: WrapperFactory, dead: str
) -> None:
    db = pooled({"host_backoff": 0.1, "host_backoff_max": 0.4}, HOST=f"{dead},{SHARED}", PORT="")
    db.ensure_connection()
    hosts = db.pool.hosts  # type: ignore[attr-defined]
    first = hosts.hosts[0]
    backoffs: list[float] = []

    def probed_enough() -> bool:
        if not backoffs or backoffs[-1] != first.backoff:
            backoffs.append(first.backoff)
        return int(host(db, dead)["connections_errors"]) >= 5  # the checkout's connect, then 4 probes

    wait_for(probed_enough, "four probes of the dead host")
    assert backoffs == sorted(backoffs) and set(backoffs) <= {0.1, 0.2, 0.4}  # doubling (as sampled)
    assert backoffs[0] in (0.1, 0.2) and backoffs[-1] == 0.4  # from host_backoff up to the cap
    assert host(db, dead)["state"] in (DOWN, "probing")
    assert int(host(db, dead)["host_retry_in_ms"]) <= 500  # 0.4 s + 25 % jitter at most
    assert host(db, dead)["host_marked_down"] == 1  # once from up to down, however many probes failed
    db.close()
    assert scalar(db, "SELECT 1") == 1  # served by the shared server meanwhile, no time lost on the dead one
    assert db.pool.get_stats()["failovers"] == 1  # type: ignore[attr-defined]


def test_require_primary_and_require_synced_pass_on_a_writable_server_without_galera(
    shared_first: Callable[..., Any], dead: str
) -> None:
    db = shared_first(require_primary=True, require_synced=True)
    assert scalar(db, "SELECT @@port") == 3306
    assert host(db, SHARED)["state"] == UP
    assert host(db, dead)["state"] == UP  # never tried
    assert db.pool.get_stats().get("failovers", 0) == 0


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("SELEKT 1", 1064),
        ("SELECT * FROM no_such_table_dmp", 1146),
        ("SELECT SLEEP(2) /* cut by the server */", 1969),
    ],
)
def test_statement_errors_that_are_not_the_hosts_leave_it_up(
    shared_first: Callable[..., Any], sql: str, code: int
) -> None:
    db = shared_first(require_primary=True)
    db.ensure_connection()
    with pytest.raises(DatabaseError) as failed, db.cursor() as cursor:
        if code == 1969:
            cursor.execute("SET SESSION max_statement_time = 0.1")
        cursor.execute(sql)
    assert failed.value.args[0] == code
    assert host(db, SHARED)["state"] == UP
    db.close()
    assert host(db, SHARED)["pool_available"] == 1  # kept: the connection is fine


def test_a_single_host_pool_has_no_hosts(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 1})
    db.ensure_connection()
    assert db.pool.hosts is None and db.pool.get_host_stats() == {}  # type: ignore[attr-defined]
    assert identity.address_of(db.connection) is None
    assert "failovers" not in db.pool.get_stats()  # type: ignore[attr-defined]
    probers = [thread.name for thread in threading.enumerate() if thread.name.endswith(f"{db.alias}-probe")]
    assert probers == []
    db.close()


# -- one session's error is not the host's: it is probed, and stays up -----------------------------


def probed_and_still_up(db: Any, connects: int) -> None:
    """Wait for the prober's connect to the suspected shared server (the pool's connects beyond
    *connects*); it must find it up, and nothing may have been closed for the host."""
    wait_for(lambda: db.pool.get_stats()["connections_num"] > connects, "the probe of the suspected host")
    values = host(db, SHARED)
    assert (values["state"], values["host_marked_down"], values["connections_errors"]) == (UP, 0, 0), values
    assert db.pool.get_stats().get("closes_host_down", 0) == 0


def test_one_killed_idle_connection_costs_only_itself(shared_first: Callable[..., Any], admin: Any) -> None:
    first, second = shared_first(validation_window=0), shared_first(validation_window=0)
    first.ensure_connection()
    second.ensure_connection()
    connects = first.pool.get_stats()["connections_num"]
    survivor, victim = first.connection.thread_id(), second.connection.thread_id()
    first.close()
    second.close()  # the most recently returned: the next checkout's
    admin.cursor().execute(f"KILL CONNECTION {victim}")  # an administrator, pt-kill, wait_timeout
    wait_for(lambda: not _alive(admin, victim), f"connection {victim} to go")
    assert scalar(first, "SELECT CONNECTION_ID()") == survivor  # the killed one's ping failed: the next idle one
    assert first.pool.get_stats()["checks_failed"] == 1
    probed_and_still_up(first, connects)


def test_a_tenant_killing_its_own_connection_costs_only_that_connection(shared_first: Callable[..., Any]) -> None:
    db = shared_first()
    db.ensure_connection()
    connects = db.pool.get_stats()["connections_num"]
    with pytest.raises(OperationalError) as killed, db.cursor() as cursor:
        cursor.execute("KILL CONNECTION_ID()")
    assert killed.value.args[0] == 1927  # ER_CONNECTION_KILLED
    db.close()  # its reset fails: 2013
    assert db.pool.get_stats()["resets_failed"] == 1
    probed_and_still_up(db, connects)


@pytest.mark.parametrize("errno", [1040, 1047, 1053, 1129])
def test_a_signal_with_a_host_error_number_does_not_take_the_host_down(
    shared_first: Callable[..., Any], errno: int
) -> None:
    db = shared_first()
    db.ensure_connection()
    connects = db.pool.get_stats()["connections_num"]
    with pytest.raises(OperationalError) as signalled, db.cursor() as cursor:
        cursor.execute(f"SIGNAL SQLSTATE '08S01' SET MYSQL_ERRNO = {errno}, MESSAGE_TEXT = 'made by a user'")
    assert signalled.value.args == (errno, "made by a user")
    assert scalar(db, "SELECT 1") == 1  # the connection and its server are fine
    probed_and_still_up(db, connects)


def test_secure_file_priv_does_not_take_the_primary_down(shared_first: Callable[..., Any], admin: Any) -> None:
    cursor = admin.cursor()
    cursor.execute("SELECT @@secure_file_priv IS NULL")
    if not cursor.fetchone()[0]:
        pytest.skip("the server's secure_file_priv allows some files: INTO OUTFILE is not refused with 1290")
    db = shared_first(require_primary=True)
    db.ensure_connection()
    connects = db.pool.get_stats()["connections_num"]
    with pytest.raises(OperationalError) as refused, db.cursor() as user:
        user.execute("SELECT 1 INTO OUTFILE '/nonexistent-dmp/out.txt'")
    assert refused.value.args[0] == 1290 and "secure-file-priv" in refused.value.args[1]
    probed_and_still_up(db, connects)  # the probe checks @@read_only: 0


# -- cancellation ------------------------------------------------------------------------------------


def test_a_cancel_kills_the_statement_on_the_host_that_runs_it(pooled: WrapperFactory, dead: str) -> None:
    db = pooled({"max_size": 1}, HOST=f"{dead},{SHARED}", PORT="")
    db.ensure_connection()
    token = CancelToken()
    timer = threading.Timer(0.3, token.cancel)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(QueryCancelled), cancel_scope(db, token=token), db.cursor() as cursor:
            cursor.execute("SELECT SLEEP(3)")
    finally:
        timer.cancel()
    assert db.pool.get_stats().get("kills_sent", 0) == 1  # type: ignore[attr-defined]
    assert time.monotonic() - started < 2.5


def _alive(admin: Any, conn_id: int) -> bool:
    cursor = admin.cursor()
    cursor.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s", (conn_id,))
    return bool(cursor.fetchone()[0])
