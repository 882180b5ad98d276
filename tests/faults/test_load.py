"""Bursts and leaks: what the pool does when everyone arrives at once, or someone never returns.

* HikariCP's spike: opening a connection costs 150 ms (through a proxy), 50
  threads arrive at once with 2 ms of work each, ``min_size=5``. At most
  two connects run at once (``max_connecting``); the other threads queue and
  are handed returned connections, so with ``max_size=50`` the burst opens
  about 6 connections, not one per thread (45 before that limit existed).
* A leaked connection (checked out and never returned) is reported once
  ``leak_timeout`` passes, with the stack of the checkout, and the others are
  still served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import TOLERANCE, Clients, PoolTargetFactory, percentile, wait_until
from tests.faults.mariadb import requires_mariadbd
from tests.faults.proxy import Proxy

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]

THREADS = 50
MIN_SIZE = 5
CONNECT_DELAY = 0.15


@pytest.mark.parametrize("max_size", [50, 10])
def test_spike_of_slow_connects(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None], max_size: int
) -> None:
    timeout = 10.0
    target = pool_target({"min_size": MIN_SIZE, "max_size": max_size, "timeout": timeout}, via=proxy)
    proxy.connect_delay = CONNECT_DELAY
    db = target.wrapper()
    db.ensure_connection()  # opens the pool; the maintenance thread fills min_size
    db.close()
    wait_until(lambda: target.stats()["pool_available"] >= MIN_SIZE, 15.0, "min_size was not filled")
    before = target.stats()
    waits: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS, timeout=30.0)

    def request() -> None:
        mine = target.wrapper()
        try:
            barrier.wait()
            started = time.monotonic()
            mine.ensure_connection()
            waited = time.monotonic() - started
            with mine.cursor() as cursor:
                cursor.execute("DO SLEEP(0.002)")
            with lock:
                waits.append(waited)
        except Exception as exc:
            with lock:
                errors.append(repr(exc))
        finally:
            mine.close()

    threads = [threading.Thread(target=request, name=f"faults-spike-{i}", daemon=True) for i in range(THREADS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, started + 60.0 - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "spike threads still running after 60 s"
    elapsed = time.monotonic() - started
    after = target.stats()
    opened = after["connections_num"] - before["connections_num"]
    figures(
        max_size=max_size,
        connections_opened=opened,
        pool_size_after=after["pool_size"],
        queued=after["requests_queued"] - before["requests_queued"],
        wait_p50_s=percentile(waits, 0.5),
        wait_p90_s=percentile(waits, 0.9),
        wait_max_s=max(waits, default=0.0),
        burst_s=elapsed,
        errors=len(errors),
    )
    assert not errors, errors[:3]
    assert len(waits) == THREADS
    assert after["pool_size"] <= max_size
    assert opened <= max_size - MIN_SIZE
    assert opened <= 15, f"the burst stampeded the server: {opened} connections for {THREADS} short requests"
    assert max(waits) <= timeout + TOLERANCE


def test_leaked_connection_is_reported_and_others_are_served(
    pool_target: PoolTargetFactory,
    figures: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="django_mysql_pooled")
    leak_timeout = 0.5
    target = pool_target({"max_size": 2, "timeout": 5.0, "leak_timeout": leak_timeout})
    leaker = target.wrapper()
    checked_out = time.monotonic()
    leaker.ensure_connection()  # never returned while the others run

    def leak_reports() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "leak_timeout" in r.getMessage()]

    try:
        with Clients(target, 3, pause=0.005, max_seconds=30.0) as clients:
            wait_until(lambda: bool(leak_reports()), 10.0, "no leak warning")
            reported_after = time.monotonic() - checked_out
            time.sleep(3 * leak_timeout)  # reported once, not at every maintenance round
        stats = target.stats()
    finally:
        leaker.close()
    reports = leak_reports()
    message = reports[0].getMessage()
    figures(
        reported_after_s=reported_after,
        warnings=len(reports),
        served_meanwhile=len(clients.successes()),
        errors=len(clients.errors()),
        leaks_detected=stats["leaks_detected"],
    )
    assert len(reports) == 1
    assert target.alias in message and f"leak_timeout={leak_timeout}" in message
    assert "test_leaked_connection_is_reported_and_others_are_served" in message, "the checkout's stack"
    assert stats["leaks_detected"] == 1
    assert reported_after <= leak_timeout + 1.0 + TOLERANCE
    assert not clients.errors(), [o.error for o in clients.errors()][:5]
    assert len(clients.successes()) >= 10
    assert target.stats()["connections_in_use"] == 0
