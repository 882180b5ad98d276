"""Regression (security review F-2): getconn() read the clock before it took the pool's lock, and
_take_locked decides READY (no round trip) vs ROUND_TRIP (ping) from that reading. A thread that stalls between the
read and the lock (GIL contention, descheduling, traceback.extract_stack with leak_timeout...)
compares a stale 'now' with used_at: an entry idle for longer than validation_window is handed
out with only the zero-round-trip check. Before this change the window was measured with a
clock read inside _validate(), after the idle entry was taken.
"""

from __future__ import annotations

import threading

import pytest

from django_mysql_pooled.pool import pool as pool_module
from tests.pool.fake_connections import FakeClock, FakeFactory


def test_an_entry_idle_past_the_window_is_pinged_even_after_a_stall(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    factory = FakeFactory(clock)
    pool = factory.pool(
        reset_on="checkin", alive=factory.alive, check=factory.ping, validation_window=0.5, min_size=0, max_size=1
    )
    try:
        conn = pool.getconn()
        pool.putconn(conn)  # reset in this thread; idle, used_at = now
        clock.advance(0.4)  # within the window when getconn() reads the clock...

        def stalled_current_thread() -> threading.Thread:
            clock.advance(1.0)  # ...then the thread stalls 1 s before taking the lock
            return threading.current_thread()

        monkeypatch.setattr(pool_module, "current_thread", stalled_current_thread)
        got = pool.getconn()
        assert got is conn
        # idle 1.4 s > validation_window when taken: a ping is due
        assert factory.pings_ok == 1, "handed out without a round trip after 1.4 s idle"
        pool.putconn(got)
    finally:
        pool.close()
