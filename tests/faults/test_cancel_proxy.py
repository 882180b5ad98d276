"""A killer connection that a load balancer sends to another server kills nothing there
(issue 12, "Proxies and load balancers").

The fault proxy plays a TCP load balancer: the pool's connection goes to the
private server, then the proxy is pointed at a second private server, where
the killer's next connection lands. The same connection id means an
unrelated session there (vitessio/vitess#9055): the killer must notice that
it reached another server and send nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_mysql_pooled import identity
from django_mysql_pooled.cancel.killers import killer_for
from django_mysql_pooled.cancel.scope import cancel_scope
from django_mysql_pooled.errors import QueryCancelled
from tests.faults.conftest import PoolTargetFactory, kills_executed, wait_until
from tests.faults.mariadb import PrivateMariaDB, requires_mariadbd
from tests.faults.proxy import Proxy

pytestmark = [requires_mariadbd, pytest.mark.usefixtures("close_killers"), pytest.mark.timeout(180)]


def test_killer_sent_to_another_server_kills_nothing(
    private_server: PrivateMariaDB,
    second_server: PrivateMariaDB,
    proxy: Proxy,
    pool_target: PoolTargetFactory,
    client_kill_only: None,
) -> None:
    target = pool_target({"max_size": 1}, via=proxy)
    db: Any = target.wrapper()
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            connection_id = cursor.fetchone()[0]
        proxy.target = (second_server.host, second_server.port)  # new connections go elsewhere now
        killer = killer_for(db.get_connection_params())
        killer.close()  # its next connection goes through the "load balancer" again
        before = kills_executed(second_server)
        with pytest.raises(QueryCancelled), cancel_scope(db, timeout=0.3), db.cursor() as cursor:
            cursor.execute("SELECT SLEEP(2)")
        assert kills_executed(second_server) == before  # no KILL reached the other server
        wait_until(lambda: target.stats().get("kills_wrong_server", 0) == 1, 10, "no refused kill counted")
        # Each side's identity, recorded without a query of its own (Django's setup, the killer's connect).
        assert (identity.identity_of(db.connection) or "").endswith(f"/{private_server.port}")
        assert (killer.identity or "").endswith(f"/{second_server.port}")
        assert target.stats().get("kills_sent", 0) == 0
        with db.cursor() as cursor:
            cursor.execute("SELECT CONNECTION_ID()")
            assert cursor.fetchone()[0] == connection_id  # the session was never disturbed
    finally:
        db.close()


def test_without_the_server_check_the_kill_goes_wherever_the_balancer_sends_it(
    private_server: PrivateMariaDB,
    second_server: PrivateMariaDB,
    proxy: Proxy,
    pool_target: PoolTargetFactory,
    client_kill_only: None,
    settings: Any,
) -> None:
    """``DJANGO_MYSQL_POOLED_KILL_CHECK_SERVER = False`` (for a proxy that resolves ids itself) sends
    the kill without comparing servers: here it reaches the wrong server, which is why the check is on
    by default."""
    settings.DJANGO_MYSQL_POOLED_KILL_CHECK_SERVER = False
    target = pool_target({"max_size": 1}, via=proxy)
    db: Any = target.wrapper()
    try:
        with db.cursor() as cursor:
            cursor.execute("SELECT 1")
        proxy.target = (second_server.host, second_server.port)
        killer = killer_for(db.get_connection_params())
        killer.close()
        before = kills_executed(second_server)
        with pytest.raises(QueryCancelled), cancel_scope(db, timeout=0.3), db.cursor() as cursor:
            cursor.execute("SELECT SLEEP(2)")
        wait_until(lambda: kills_executed(second_server) > before, 10, "no KILL reached the second server")
        assert target.stats().get("kills_wrong_server", 0) == 0
    finally:
        db.close()
