"""Statistics per server of a pool with several hosts (issue 14, item 5): the snapshot,
``manage.py poolstats`` and Prometheus.

The pool lists a loopback port where nothing listens first, then the test
server: its first connect fails over, so the first host is down (for a long
backoff: no probe during the test) and the second up, with the connection.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_mysql_pooled.monitoring.prometheus import PoolCollector
from django_mysql_pooled.monitoring.publisher import MIN_INTERVAL, Publisher
from django_mysql_pooled.monitoring.snapshots import read_snapshots
from tests.conftest import WrapperFactory

#: How the client reports a refused connect: 2002 (MariaDB Connector/C) or 2003 (libmysqlclient).
REFUSED = ("(2002)", "(2003)")


pytestmark = pytest.mark.usefixtures("stats_path")  # tests/monitoring/conftest.py


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port bound (so that nobody else takes it) but not listening: connects are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def live_label() -> str:
    settings = connections["default"].settings_dict
    return f"{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 3306}"


@pytest.fixture
def two_hosts(pooled: WrapperFactory, dead_port: int) -> Any:
    """A wrapper whose pool lists a dead host then the test server, with its connection open."""
    pool = {"max_size": 2, "host_backoff": 600, "host_backoff_max": 600}
    db: Any = pooled(pool, HOST=f"127.0.0.1:{dead_port},{live_label()}", PORT="")
    db.ensure_connection()
    return db


def publish(db: Any, stats_path: Path) -> dict[str, Any]:
    """Publish the pool's snapshot now (after the throttle: the maintenance thread may just have)."""
    pool = db.pool
    time.sleep(MIN_INTERVAL)
    next(hook for hook in pool.hooks if isinstance(hook, Publisher))(pool)
    data: dict[str, Any] = json.loads((stats_path / f"{os.getpid()}-{db.alias}.json").read_text())
    return data


def run(*args: str) -> str:
    out = StringIO()
    call_command("poolstats", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def scrape(db: Any) -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(lambda: {db.alias: db.pool}))
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


# -- the snapshot --------------------------------------------------------------------


def test_the_snapshot_lists_each_server_in_order(two_hosts: Any, dead_port: int, stats_path: Path) -> None:
    dead, live = publish(two_hosts, stats_path)["hosts"]
    assert dead["host"] == f"127.0.0.1:{dead_port}" and live["host"] == live_label()
    assert dead["state"] == "down" and dead["reason"][:6] in REFUSED and dead["host_retry_in_ms"] > 0
    assert (dead["host_marked_down"], dead["connections_errors"], dead["failovers"], dead["pool_size"]) == (1, 1, 1, 0)
    assert live["state"] == "up" and live["reason"] == "" and live["host_up"] == 1
    assert (live["pool_size"], live["connections_in_use"], live["pool_available"]) == (1, 1, 0)
    [read] = [s for s in read_snapshots().snapshots if s["alias"] == two_hosts.alias]
    assert read["hosts"] == [dead, live]


def test_a_pool_with_one_server_publishes_no_hosts(pooled: WrapperFactory, stats_path: Path) -> None:
    db: Any = pooled({"max_size": 2})
    db.ensure_connection()
    assert "hosts" not in publish(db, stats_path)
    assert "SERVER" not in run()
    assert not [name for name in scrape(db) if name.startswith("django_mysql_pooled_host_")]


def test_a_change_of_a_server_alone_is_published(stats_path: Path) -> None:
    publisher = Publisher("hosts", {}, {})
    up = [{"host": "db1:3306", "state": "up", "reason": "", "host_up": 1}]
    down = [{"host": "db1:3306", "state": "down", "reason": "(2003) gone", "host_up": 0}]
    assert publisher.publish({"requests_num": 1}, hosts=up, now=100.0)
    assert not publisher.publish({"requests_num": 1}, hosts=up, now=102.0)  # unchanged
    assert publisher.publish({"requests_num": 1}, hosts=down, now=103.0)
    [snapshot] = read_snapshots().snapshots
    assert snapshot["hosts"] == down
    publisher.remove()


def test_a_malformed_hosts_entry_skips_the_snapshot(stats_path: Path) -> None:
    publisher = Publisher("bad-hosts", {}, {})
    assert publisher.publish({"requests_num": 1}, hosts=[{"host": "db1:3306", "state": "up", "reason": 3}], now=1.0)
    result = read_snapshots()
    assert result.snapshots == []
    assert "malformed snapshot" in result.warnings[0]
    publisher.remove()


# -- poolstats -----------------------------------------------------------------------


def test_poolstats_shows_a_row_per_server(two_hosts: Any, dead_port: int, stats_path: Path) -> None:
    publish(two_hosts, stats_path)
    report = json.loads(run("--json"))["databases"][two_hosts.alias]
    assert [entry["state"] for entry in report["processes"][0]["hosts"]] == ["down", "up"]
    out = run()
    lines = out.splitlines()
    heading = lines.index("  Servers, as each process sees them:") + 1
    assert lines[heading].split() == [
        "SERVER", "PID", "STATE", "RETRY", "IN", "SIZE", "IN", "USE", "IDLE", "ERRORS", "MARKED", "DOWN",
        "FAILOVERS", "REASON",
    ]  # fmt: skip
    dead, live = (lines[heading + 1].split(), lines[heading + 2].split())
    assert dead[:4] == [f"127.0.0.1:{dead_port}", str(os.getpid()), "down", f"{dead[3]}"]
    assert 0 < float(dead[3]) <= 750 and dead[4] == "s"
    assert dead[5:11] == ["0", "0", "0", "1", "1", "1"] and dead[11] in REFUSED
    assert live == [live_label(), str(os.getpid()), "up", "-", "1", "1", "0", "0", "0", "0"]


def test_poolstats_shows_each_servers_view(monkeypatch: pytest.MonkeyPatch, dead_port: int) -> None:
    """The server's view (max_connections, Threads_connected...) of each host, not only the first's."""
    alias, dead = "several_hosts", f"127.0.0.1:{dead_port}"
    settings = {**connections["default"].settings_dict, "HOST": f"{dead},{live_label()}", "PORT": ""}
    settings["OPTIONS"] = {**settings["OPTIONS"], "pool": True}
    monkeypatch.setitem(connections.settings, alias, settings)
    try:
        report = json.loads(run("--json", "--database", alias))["databases"][alias]
        out = run("--database", alias)
    finally:
        del connections[alias]
    first, second = report["servers"]
    assert (first["host"], second["host"]) == (dead, live_label())
    assert first["error"].startswith(f"cannot reach the server {dead} of database {alias!r}: ")
    assert second["max_connections"] > 0
    assert report["server"] == {k: v for k, v in first.items() if k != "host"}  # the first's, as with one server
    assert f"  Server {dead}: cannot reach the server {dead}" in out
    assert f"  Server {live_label()}: max_connections=" in out


# -- Prometheus ------------------------------------------------------------------------


def test_prometheus_has_a_series_per_server(two_hosts: Any, dead_port: int) -> None:
    families = scrape(two_hosts)
    dead = {"alias": two_hosts.alias, "host": f"127.0.0.1:{dead_port}"}
    live = {"alias": two_hosts.alias, "host": live_label()}

    def values(name: str) -> list[tuple[dict[str, str], float]]:
        return [(sample.labels, sample.value) for sample in families[name].samples]

    assert values("django_mysql_pooled_host_up") == [(dead, 0), (live, 1)]
    assert values("django_mysql_pooled_host_pool_size") == [(dead, 0), (live, 1)]
    assert values("django_mysql_pooled_host_connections_in_use") == [(dead, 0), (live, 1)]
    assert families["django_mysql_pooled_host_failovers"].type == "counter"
    assert values("django_mysql_pooled_host_failovers")[0] == (dead, 1)
    assert values("django_mysql_pooled_host_marked_down")[0] == (dead, 1)
    assert [labels for labels, value in values("django_mysql_pooled_host_state") if value] == [
        {**dead, "state": "down"},
        {**live, "state": "up"},
    ]
    assert 0 < values("django_mysql_pooled_host_retry_in_ms")[0][1] <= 750_000  # 600 s +- 25 % jitter
    assert families["django_mysql_pooled_host_up"].documentation == (
        "1 while the host is up, 0 while it is down or being probed. Unit: hosts."
    )
    # The pool's own series are as with one server: one per alias.
    assert values("django_mysql_pooled_pool_size") == [({"alias": two_hosts.alias}, 1)]


def test_poolstats_prometheus_labels_each_server(two_hosts: Any, dead_port: int, stats_path: Path) -> None:
    publish(two_hosts, stats_path)
    families = {f.name: f for f in text_string_to_metric_families(run("--prometheus"))}
    samples = [s for s in families["django_mysql_pooled_host_up"].samples if s.labels["alias"] == two_hosts.alias]
    machine = {"alias": two_hosts.alias, "host": socket.gethostname(), "pid": str(os.getpid())}
    assert [(s.labels, s.value) for s in samples] == [
        ({**machine, "server": f"127.0.0.1:{dead_port}"}, 0),
        ({**machine, "server": live_label()}, 1),
    ]
