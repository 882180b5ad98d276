"""Races of the multi-host pool: checkouts, return workers, the prober and servers going up and down at once.

Real threads and the real clock (the prober runs every 0.1 s, backoffs are
tens of milliseconds) for a bounded time; the fake servers record anything
the pool must never do. Afterwards, with every connection returned and the
threads idle, the pool's counts must match the servers' truth exactly.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from typing import Any

import pytest

from django_mysql_pooled.pool.hosts import BALANCE, FAILOVER
from tests.pool.fake_connections import ConnectionLost, FakeConnection, Worker, wait_until
from tests.pool.fake_hosts import FakeHosts, HostDown

LABELS = ["a:1", "b:2", "c:3"]
MAX_SIZE = 6
RUN_FOR = 1.5  # seconds of traffic per run


class Traffic:
    """Client threads checking out, sometimes failing a statement, and returning."""

    def __init__(self, pool: object, servers: FakeHosts) -> None:
        self.pool = pool
        self.servers = servers
        self.lock = threading.Lock()
        self.holders: dict[FakeConnection, threading.Thread] = {}
        self.problems: list[str] = []
        self.served = 0
        self.stop = threading.Event()

    def client(self, seed: int) -> None:
        rng = random.Random(seed)
        pool = self.pool
        while not self.stop.is_set():
            try:
                conn = pool.getconn(timeout=1.0)  # type: ignore[attr-defined]
            except (HostDown, ConnectionLost):
                continue  # every server refused at that moment
            except Exception as exc:  # PoolTimeout while every server is down, say
                if "could not get a connection" not in str(exc):
                    self.problems.append(f"checkout raised {exc!r}")
                continue
            self.check_out(conn)
            time.sleep(rng.random() * 0.002)
            broken = False
            if rng.random() < 0.05:
                broken = pool.connection_failed(conn, HostDown("(1047) node not ready"))  # type: ignore[attr-defined]
            self.check_in(conn)
            pool.putconn(conn, broken=broken)  # type: ignore[attr-defined]

    def check_out(self, conn: FakeConnection) -> None:
        with self.lock:
            if conn in self.holders:
                self.problems.append(f"{conn!r} handed to {threading.current_thread().name} while held")
            if conn.closed:
                self.problems.append(f"{conn!r} handed out closed")
            self.holders[conn] = threading.current_thread()
            self.served += 1

    def check_in(self, conn: FakeConnection) -> None:
        with self.lock:
            self.holders.pop(conn, None)


def chaos(servers: FakeHosts, stop: threading.Event, seed: int) -> None:
    """Take servers down (connections die) and bring them back, keeping one up most of the time."""
    rng = random.Random(seed)
    while not stop.is_set():
        label = rng.choice(LABELS)
        if label in servers.down or len(servers.down) == len(LABELS) - 1:
            servers.bring_up(label)
        else:
            servers.take_down(label)
        time.sleep(rng.random() * 0.05)


def watch_counts(pool: object, stop: threading.Event, problems: list[str]) -> None:
    hosts = pool.hosts.hosts  # type: ignore[attr-defined]
    while not stop.is_set():
        for host in hosts:
            if host.open < 0:
                problems.append(f"{host.label} open count went negative: {host.open}")
        size = pool.get_stats()["pool_size"]  # type: ignore[attr-defined]
        if size > MAX_SIZE:
            problems.append(f"pool_size {size} above max_size")
        time.sleep(0.001)


@pytest.mark.parametrize("policy", [FAILOVER, BALANCE])
@pytest.mark.parametrize("reset_on", ["checkout", "checkin"])
def test_counts_survive_checkouts_returns_probes_and_servers_flapping(policy: str, reset_on: str) -> None:
    servers = FakeHosts(LABELS, time.monotonic, max_open=MAX_SIZE + 1)  # + the probe's (HOST-6)
    options: dict[str, Any] = {"reset_on": reset_on}
    if reset_on == "checkin":
        options.update(alive=servers.alive, check=servers.ping, num_workers=2, validation_window=0.01)
    pool = servers.pool(
        policy=policy, backoff=0.01, backoff_max=0.05, max_size=MAX_SIZE, timeout=1.0, min_size=1, **options
    )
    traffic = Traffic(pool, servers)
    stop = threading.Event()
    problems: list[str] = []
    threads = [Worker(functools.partial(traffic.client, seed), name=f"client-{seed}") for seed in range(8)]
    threads += [
        Worker(lambda: chaos(servers, stop, 99), name="chaos"),
        Worker(lambda: watch_counts(pool, stop, problems), name="watch"),
    ]
    try:
        for thread in threads:
            thread.start()
        time.sleep(RUN_FOR)
        traffic.stop.set()
        stop.set()
        for thread in threads:
            thread.outcome()
        for label in LABELS:
            servers.bring_up(label)
        assert pool.drain()
        wait_until(lambda: all(host.state == "up" for host in pool.hosts.hosts), what="every host probed back")  # type: ignore[union-attr]
        assert traffic.problems == [] and problems == []
        assert traffic.served > 100
        stats = pool.get_stats()
        assert stats["connections_in_use"] == 0
        assert stats["pool_size"] == len(servers.open) == stats["pool_available"]
        per_host = pool.get_host_stats()
        for label in LABELS:
            assert per_host[label]["pool_size"] == len(servers.open_on(label)), (label, per_host[label])
            assert per_host[label]["pool_available"] == len(servers.open_on(label))
        assert sum(int(per_host[label]["failovers"]) for label in LABELS) >= 1  # type: ignore[call-overload]
    finally:
        pool.close()
    assert servers.violations == []
    assert all(conn.closed or conn.detached for conn in servers.made if conn not in traffic.holders)
