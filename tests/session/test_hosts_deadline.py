"""Several hosts against the real server: a hung host costs a checkout its share of the deadline, not a TCP
timeout, and no message, stat or log line carries the password.

The hung host is a loopback socket that accepts connections (the kernel
completes the TCP handshake) and never sends MySQL's greeting: a server
that is up at the network level and stuck above it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest
from django.db import OperationalError

from django_mysql_pooled.config import PoolConfig
from django_mysql_pooled.pool.hosts import DOWN, UP
from django_mysql_pooled.session import factory
from tests.conftest import WrapperFactory
from tests.hostutil import scalar
from tests.session.test_hosts_real import SHARED, closed_port


@pytest.fixture
def hung() -> Iterator[str]:
    """``"127.0.0.1:port"`` of a socket that accepts and then never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def test_a_hung_host_costs_a_checkout_its_share_of_the_deadline(pooled: WrapperFactory, hung: str) -> None:
    db = pooled({"max_size": 1, "timeout": 4.0}, HOST=f"{hung},{SHARED}", PORT="")
    started = time.monotonic()
    assert scalar(db, "SELECT @@port") == 3306
    took = time.monotonic() - started
    assert 1.5 <= took < 3.5, took  # half of 4 s (connect_timeout 2), then the shared server at once
    stats: dict[str, Any] = db.pool.get_host_stats()  # type: ignore[attr-defined]
    assert stats[hung]["state"] == DOWN
    assert str(stats[hung]["reason"]).startswith("(2013) "), stats[hung]["reason"]
    assert stats[SHARED]["state"] == UP
    started = time.monotonic()
    db.close()
    db.ensure_connection()  # the hung host is down: not tried again
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(("connect_timeout", "timeout", "expected"), [(10, 2.5, 3), (2, 30.0, 2), (5, 0.2, 1)])
def test_each_hosts_connect_timeout_is_bounded_by_its_share(
    monkeypatch: pytest.MonkeyPatch, connect_timeout: int, timeout: float, expected: int
) -> None:
    seen: list[dict[str, Any]] = []

    def record(alias: str, params: dict[str, Any], left: float | None, **kwargs: Any) -> Any:
        seen.append({**params, **kwargs})
        raise MySQLdb.OperationalError(2003, "recorded")

    monkeypatch.setattr(factory, "open_connection", record)
    config = PoolConfig(hosts=("db1:1", "[fd00::2]:2"))
    connect_host = factory._hosting("app", {"host": "x", "port": 9, "connect_timeout": connect_timeout}, config)[
        "connect_host"
    ]
    with pytest.raises(MySQLdb.OperationalError):
        connect_host("[fd00::2]:2", timeout)
    assert (seen[0]["host"], seen[0]["port"], seen[0]["connect_timeout"]) == ("fd00::2", 2, expected)
    assert seen[0]["ready"] is True  # a query proves the server serves (a Galera node not ready accepts connects)


PASSWORD = "s3cret-hosts-Passw0rd"


def test_no_message_stat_or_log_line_carries_the_password(
    pooled: WrapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"127.0.0.1:{closed_port()}"
    db = pooled({"max_size": 1}, HOST=f"{dead},{SHARED}", PORT="", PASSWORD=PASSWORD)
    with caplog.at_level(logging.DEBUG, logger="django_mysql_pooled"), pytest.raises(OperationalError) as refused:
        db.ensure_connection()  # the dead host first, then the shared server refuses the password
    assert refused.value.args[0] == 1045  # not the host's fault: raised at once
    pool: Any = db.pool  # type: ignore[attr-defined]
    texts = [str(refused.value), repr(refused.value), repr(pool), repr(pool.hosts), repr(pool.config)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(values) for values in pool.get_host_stats().values()]
    assert any(dead in text for text in texts)
    assert not [text for text in texts if PASSWORD in text]


def test_every_new_connection_of_several_hosts_runs_one_query_more(pooled: WrapperFactory) -> None:
    selects = "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'COM_SELECT'"
    one = pooled({"max_size": 1})
    several = pooled({"max_size": 1}, HOST=f"{SHARED},127.0.0.1:{closed_port()}", PORT="")
    assert int(scalar(several, selects)) == int(scalar(one, selects)) + 1  # SELECT @@global.read_only
