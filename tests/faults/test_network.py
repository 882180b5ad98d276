"""Network faults between the pool and the server, made by a proxy: cuts, stalls, slowness.

Whatever the network does, a checkout ends within the pool's ``timeout``
(plus a tolerance for a loaded machine) with a connection, a
``PoolTimeout`` or the driver's connect error, and service resumes as soon
as the network is back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from tests.faults.conftest import TOLERANCE, Clients, Outcome, PoolTargetFactory, describe, select_one
from tests.faults.mariadb import requires_mariadbd
from tests.faults.proxy import Proxy

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]

TIMEOUT = 2.0  # the pool's checkout timeout, seconds
#: What a caller may see while the network is gone: PoolTimeout, or the driver's
#: 2002/2003 (cannot connect), 2006/2013 (lost the connection, or no greeting).
OUTAGE_ERRORS = {"PoolTimeout", "OperationalError(2002)", "OperationalError(2003)", "OperationalError(2013)"}


def kinds(outcomes: list[Outcome]) -> set[str]:
    return {"PoolTimeout" if o.kind == "PoolTimeout" else f"{o.kind}({o.code})" for o in outcomes}


def test_network_cut_fails_fast_and_service_resumes(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None]
) -> None:
    target = pool_target({"max_size": 4, "timeout": TIMEOUT}, via=proxy)
    with Clients(target, 6, pause=0.01) as clients:
        clients.wait_for_successes(30)
        cut_at = time.monotonic()
        proxy.stop()  # connects refused, every live session cut
        time.sleep(1.5)
        proxy.start()
        back_at = time.monotonic()
        recovered_at = clients.recovered_at(back_at)
        time.sleep(0.5)
    stats = target.stats()
    outage = [o for o in clients.errors() if o.started < back_at]
    late = clients.errors(started_after=back_at)
    figures(
        errors_during_cut=len(outage),
        error_kinds=clients.error_kinds(),
        first_error_after_cut_s=min((o.ended for o in outage), default=cut_at) - cut_at,
        max_request_s=clients.max_duration(),
        errors_after_network_back=len(late),
        recovery_s=recovered_at - back_at,
        connections_opened=stats["connections_num"],
        resets_failed=stats["resets_failed"],
    )
    assert outage, "the cut went unnoticed"
    assert kinds(outage) <= OUTAGE_ERRORS
    assert not late, [o.error for o in late][:5]
    assert clients.max_duration() <= TIMEOUT + TOLERANCE
    assert recovered_at - back_at <= 1.0 + TOLERANCE


@pytest.mark.slow
def test_deaf_network_times_out_within_timeout(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None]
) -> None:
    """New connections get no greeting; six threads share four slots, so some also wait for a slot."""
    target = pool_target({"max_size": 4, "timeout": TIMEOUT}, via=proxy)
    with Clients(target, 6, pause=0.01) as clients:
        clients.wait_for_successes(30)
        with proxy.deaf():
            proxy.cut()  # the pooled sessions die too: every checkout must connect
            stalled_at = time.monotonic()
            time.sleep(2 * TIMEOUT + 0.5)
        back_at = time.monotonic()
        recovered_at = clients.recovered_at(back_at)
        time.sleep(0.5)
    during = [o for o in clients.errors() if o.started < back_at]
    late = clients.errors(started_after=back_at)
    stalled = [o.duration for o in clients.outcomes if stalled_at <= o.started < back_at]
    figures(
        errors_during_stall=len(during),
        error_kinds=clients.error_kinds(),
        max_request_s=clients.max_duration(),
        max_overshoot_s=clients.max_duration() - TIMEOUT,
        min_stalled_request_s=min(stalled, default=0.0),
        errors_after_network_back=len(late),
        recovery_s=recovered_at - back_at,
        pool_timeouts=target.stats()["requests_timeouts"],
    )
    assert during and kinds(during) <= OUTAGE_ERRORS
    assert not late, [o.error for o in late][:5]
    assert clients.max_duration() <= TIMEOUT + TOLERANCE
    assert recovered_at - back_at <= 1.0 + TOLERANCE


def test_mute_network_bounds_a_new_connection(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None]
) -> None:
    """Accepted but silent: the greeting never comes; ``connect_timeout`` ends the checkout."""
    target = pool_target({"max_size": 2, "timeout": TIMEOUT}, via=proxy)
    db = target.wrapper()
    with proxy.mute():
        started = time.monotonic()
        with pytest.raises(Exception) as info:
            db.ensure_connection()
        elapsed = time.monotonic() - started
    db.close()
    _text, kind, code = describe(info.value)
    figures(checkout_s=elapsed, error=f"{kind}({code})")
    assert (kind, code) == ("OperationalError", 2013), info.value
    assert elapsed <= TIMEOUT + TOLERANCE
    assert target.stats()["pool_size"] == 0


@pytest.mark.parametrize("reset", ["checkout", True])
def test_mute_network_bounds_the_reset_of_an_idle_connection(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None], reset: object
) -> None:
    """A pooled session whose network stalls: the checkout must still end within ``timeout``.

    ``reset="checkout"``: the reset stalls. Reset at checkin: the connection sat
    idle past the validation window, so the checkout pings it, and the ping stalls.
    """
    target = pool_target({"max_size": 1, "timeout": TIMEOUT, "reset": reset}, via=proxy)
    db = target.wrapper()
    select_one(db, 0, 0)
    db.close()  # one idle connection, about to be reset (or pinged) by the next checkout
    assert target.pool.drain()
    time.sleep(target.pool.validation_window)
    outcome: list[str] = []

    def checkout() -> None:
        other = target.wrapper()
        try:
            other.ensure_connection()
            outcome.append("connection")
        except Exception as exc:
            outcome.append(describe(exc)[1])
        finally:
            other.close()

    thread = threading.Thread(target=checkout, name="faults-stalled-checkout", daemon=True)
    with proxy.mute():
        started = time.monotonic()
        thread.start()
        thread.join(TIMEOUT + TOLERANCE)
        hung = thread.is_alive()
        elapsed = time.monotonic() - started
        proxy.cut()  # unblock the reset: it fails with EOF and the checkout opens a new connection
    thread.join(30.0)
    figures(checkout_ended_within_s=None if hung else elapsed, hung=hung, then=outcome)
    assert not thread.is_alive()
    assert not hung, f"the checkout was still blocked in the reset after {elapsed:.1f} s (timeout={TIMEOUT} s)"
    assert outcome == ["PoolTimeout"], outcome  # the guard cut the reset off at the deadline
    assert target.stats()["requests_timeouts"] == 1


def test_mute_network_bounds_the_reset_at_checkin(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None]
) -> None:
    """A checkin whose reset stalls on the network ends at once, and the reset within ``timeout``.

    The return worker resets the connection; the guard thread cuts the stalled
    reset off at the pool's ``timeout`` and the connection is closed.
    """
    target = pool_target({"max_size": 1, "timeout": TIMEOUT}, via=proxy)
    db = target.wrapper()
    select_one(db, 0, 0)
    db.inc_thread_sharing()  # closed by another thread
    with proxy.mute():
        started = time.monotonic()
        closer = threading.Thread(target=db.close, name="faults-stalled-checkin", daemon=True)
        closer.start()
        closer.join(TIMEOUT + TOLERANCE)
        hung = closer.is_alive()
        elapsed = time.monotonic() - started
        reset_done = target.pool.drain(TIMEOUT + TOLERANCE)
        reset_s = time.monotonic() - started
        proxy.cut()
    closer.join(30.0)
    stats = target.stats()
    figures(
        checkin_ended_within_s=None if hung else elapsed,
        hung=hung,
        reset_ended_within_s=reset_s if reset_done else None,
        resets_failed=stats["resets_failed"],
    )
    assert not hung, f"close() was still blocked after {elapsed:.1f} s (timeout={TIMEOUT} s)"
    assert reset_done, f"the stalled reset was not cut off within {TIMEOUT + TOLERANCE} s"
    assert (stats["resets_failed"], stats["closes_broken"], stats["pool_size"]) == (1, 1, 0)
    select_one(target.wrapper(), 0, 1)  # a new connection serves the next checkout


def test_slow_network_serves_every_request(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None]
) -> None:
    """50 ms per chunk: requests slow down, none fails, every checkout within ``timeout``."""
    target = pool_target({"max_size": 2, "timeout": TIMEOUT}, via=proxy)
    proxy.latency = 0.05
    with Clients(target, 3, pause=0.01, max_requests=4) as clients:
        clients.join(60.0)
    stats = target.stats()
    durations = [o.duration for o in clients.outcomes]
    figures(
        requests=len(durations),
        errors=len(clients.errors()),
        max_request_s=max(durations),
        min_request_s=min(durations),
        connect_ms_avg=stats["connections_ms"] // max(1, stats["connections_num"]),
        reset_ms_avg=stats["resets_ms"] // max(1, stats["resets_num"]),
    )
    assert not clients.errors(), clients.error_kinds()
    assert max(durations) <= TIMEOUT + TOLERANCE


@pytest.mark.slow
def test_very_slow_network_overruns_timeout_only_while_connecting(
    proxy: Proxy, pool_target: PoolTargetFactory, figures: Callable[..., None]
) -> None:
    """300 ms per chunk and ``timeout=1``: opening a connection takes longer than the timeout.

    ``connect_timeout`` (whole seconds) bounds the TCP connect and the wait
    for the server's greeting only; the authentication exchange, the
    statements mysqlclient sends after connecting and the pool's probe of
    its first connection have no deadline. So a checkout that opens a
    connection overruns ``timeout``; a checkout that waits for one ends with
    ``PoolTimeout`` on time (here often: each request holds its connection
    for more than the 1 s timeout). The figures say by how much.
    """
    timeout, latency = 1.0, 0.3
    target = pool_target({"max_size": 2, "timeout": timeout}, via=proxy)
    proxy.latency = latency
    with Clients(target, 3, pause=0.01, max_requests=2) as clients:
        clients.join(90.0)
    stats = target.stats()
    waited = [o.duration for o in clients.errors()]
    figures(
        requests=len(clients.outcomes),
        successes=len(clients.successes()),
        error_kinds=clients.error_kinds(),
        max_request_s=clients.max_duration(),
        connect_s_avg=stats["connections_ms"] / 1000 / max(1, stats["connections_num"]),
        max_pool_timeout_after_s=max(waited, default=0.0),
    )
    assert kinds(clients.errors()) <= {"PoolTimeout"}
    assert clients.successes(), "the slow network still serves requests"
    assert max(waited, default=0.0) <= timeout + TOLERANCE
