"""Security review of the multi-host pool (SR-1 to SR-3): each test failed on the code before its fix.

* SR-1: a host that completes the login and then never answers hung the
  checkout past its ``timeout`` (the readiness query had no bound) and, two
  such dials, every later connect of the pool.
* SR-2: a tenant's ``SIGNAL ... MYSQL_ERRNO = 1047`` has the host probed; a
  probe that met an error that is not the host's (here the account's
  ``MAX_USER_CONNECTIONS``, 1226, while the pool was at ``max_size``) marked a
  healthy host down and moved the traffic.
* SR-3: with no host up, a host marked down keeps its idle connections; when
  another host came back they were still handed out (a demoted, read-only
  primary with ``require_primary``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import OperationalError

from tests.conftest import WrapperFactory
from tests.faults.mariadb import DATABASE, PASSWORD, USER, PrivateMariaDB, requires_mariadbd
from tests.faults.proxy import Proxy
from tests.faults.stallproxy import StallAfterAuth
from tests.faults.test_hosts import read_only  # noqa: F401 - a fixture
from tests.hostutil import scalar, state, wait_for
from tests.session.test_hosts_real import SHARED

pytestmark = pytest.mark.timeout(120)


def test_sr1_a_host_that_hangs_after_the_login_costs_its_share_of_the_deadline(pooled: WrapperFactory) -> None:
    proxy = StallAfterAuth()
    try:
        db = pooled({"max_size": 2, "timeout": 2.0}, HOST=f"127.0.0.1:{proxy.port},{SHARED}", PORT="")
        db.inc_thread_sharing()
        result: dict[str, Any] = {}

        def run() -> None:
            started = time.monotonic()
            try:
                result["value"] = scalar(db, "SELECT @@port")
            finally:
                result["took"] = time.monotonic() - started
                db.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        thread.join(15)
        assert not thread.is_alive(), "a checkout with timeout=2.0 still blocked after 15 s"
        assert proxy.stalled >= 1, "the hung host was not tried first"
        assert result.get("value") == int(SHARED.rsplit(":", 1)[1]), result
        assert result["took"] < 2.0 + 2.0, result  # its share, rounded up to a whole second, then the next host
    finally:
        proxy.close()


def _root(server: PrivateMariaDB, sql: str) -> None:
    conn = server.connect()
    try:
        conn.cursor().execute(sql)
    finally:
        conn.close()


@requires_mariadbd
@pytest.mark.django_db(transaction=True)
def test_sr2_a_tenants_signal_does_not_take_a_healthy_host_out(
    pooled: WrapperFactory, private_server: PrivateMariaDB, proxy: Proxy
) -> None:
    label = f"{private_server.host}:{private_server.port}"
    other = f"127.0.0.1:{proxy.port}"

    def make() -> Any:
        return pooled(
            {"max_size": 2}, alias="sr2", HOST=f"{label},{other}", PORT="", USER=USER, PASSWORD=PASSWORD, NAME=DATABASE
        )

    _root(private_server, f"ALTER USER '{USER}'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 2")
    a, b = make(), make()
    try:
        assert scalar(a, "SELECT 1") == 1 and scalar(b, "SELECT 1") == 1  # the pool at max_size, both on A
        with pytest.raises(OperationalError):
            scalar(a, "SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1047, MESSAGE_TEXT = 'a tenant: WSREP not ready'")
        a.close()  # its connection is closed at checkin: the pool has room, the probe runs (and meets 1226)
        time.sleep(1.0)  # ten probe rounds
        assert state(a, label)["state"] == "up", state(a, label)
        assert scalar(a, "SELECT 1") == 1
        assert a.pool.host_of(a.connection) == label
    finally:
        _root(private_server, f"ALTER USER '{USER}'@'127.0.0.1' WITH MAX_USER_CONNECTIONS 0")
        a.close()
        b.close()


@pytest.fixture
def door() -> Iterator[Proxy]:
    forward = Proxy(("127.0.0.1", 3306))
    forward.start()
    forward.stop()  # B starts unreachable; its port is kept
    yield forward
    forward.stop()


@requires_mariadbd
@pytest.mark.django_db(transaction=True)
def test_sr3_no_connection_to_a_host_marked_down_is_handed_out_once_another_is_up(
    pooled: WrapperFactory,
    private_server: PrivateMariaDB,
    door: Proxy,
    read_only: Any,  # noqa: F811
) -> None:
    name = pooled({}, alias="sr3probe").settings_dict["NAME"]
    _root(private_server, f"CREATE DATABASE IF NOT EXISTS `{name}`")
    a_label, b_label = f"{private_server.host}:{private_server.port}", f"127.0.0.1:{door.port}"

    def make() -> Any:
        options = {"max_size": 3, "require_primary": True, "host_backoff": 0.3, "host_backoff_max": 0.3}
        return pooled(options, alias="sr3", HOST=f"{b_label},{a_label}", PORT="")

    d1, d2, d3 = make(), make(), make()
    for db in (d1, d2, d3):
        assert scalar(db, "SELECT @@port") == private_server.port  # B refused: all on A
    d2.close()
    d3.close()  # two idle connections to A
    read_only(True)  # A is demoted
    with pytest.raises(OperationalError):
        scalar(d1, "SIGNAL SQLSTATE 'HY000' SET MYSQL_ERRNO = 1290, MESSAGE_TEXT = 'read-only'")
    d1.close()  # its connection is closed (the pool has room for the probe)
    wait_for(lambda: state(d1, a_label)["state"] == "down", "A marked down (its probe meets read_only=1)")
    door.start()  # B is reachable again
    wait_for(lambda: state(d1, b_label)["state"] == "up", "B up again after its probe")
    for db in (d2, d3):
        scalar(db, "SELECT 1")
        assert db.pool.host_of(db.connection) == b_label, "a checkout got a connection to the down host A"
