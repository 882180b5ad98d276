"""A Hypothesis state machine over the pool, on the fake factory and a fake clock.

Hypothesis drives random sequences of checkouts (with ``timeout=0``, so an
exhausted pool fails at once), returns (healthy or broken), clock jumps,
maintenance rounds, killed connections (their next reset fails), connect
failures, ``pop_stats()`` and ``close()``. After every step the machine checks
the pool against the factory's truth and its own count of what happened.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from django_mysql_pooled.pool.errors import PoolClosed, PoolTimeout
from django_mysql_pooled.pool.stats import COUNTERS
from tests.pool.fake_connections import ConnectError, FakeClock, FakeConnection, FakeFactory, start

MIN_SIZE, MAX_SIZE = 1, 3
MAX_IDLE, MAX_LIFETIME = 1_000.0, 10_000.0
BACKOFF_MAX = 10.0  # the background fill retries at most this long after a failed connect

_durations = st.one_of(
    st.sampled_from([0, 1, MAX_IDLE - 1, MAX_IDLE, MAX_LIFETIME * 0.95 - 1, MAX_LIFETIME * 0.95, MAX_LIFETIME]),
    st.integers(0, 12_000),
)


def _by_number(conn: FakeConnection) -> int:
    return conn.number


class PoolMachine(RuleBasedStateMachine):
    """One pool per example; maintenance runs only when a rule says so."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.factory = FakeFactory(self.clock, max_open=MAX_SIZE)
        self.pool = self.factory.pool(
            name="machine",
            min_size=MIN_SIZE,
            max_size=MAX_SIZE,
            timeout=0,
            max_idle=MAX_IDLE,
            max_lifetime=MAX_LIFETIME,
        )
        start(self.pool)  # initial fill; the worker's next round is minutes of real time away
        self.held: dict[FakeConnection, float] = {}  # connection -> checkout time
        self.returned_at: dict[FakeConnection, float] = {}
        self.closed = False
        self.popped: Counter[str] = Counter()
        self.requests = 0
        self.timeouts = 0
        self.checkout_connect_errors = 0
        self.bad_returns = 0
        self.bad_returns_while_open = 0
        self.usage_ms = 0.0
        self.pops = 0
        self.closes_before_close = 0
        self.last_connect_error: float | None = None
        self.seen_connect_errors = 0

    def teardown(self) -> None:
        self.pool.close()
        assert self.factory.violations == []

    # -- rules ------------------------------------------------------------------

    @rule()
    def checkout(self) -> None:
        try:
            conn = self.pool.getconn(timeout=0)
        except PoolTimeout:
            assert not self.closed
            assert len(self.held) == MAX_SIZE, "timed out with a connection to spare"
            self.timeouts += 1
        except PoolClosed:
            assert self.closed
        except ConnectError:
            assert not self.closed
            assert self.factory.always_fail is not None
            self.checkout_connect_errors += 1
        else:
            assert not self.closed
            assert conn not in self.held, f"{conn!r} handed out twice"
            assert not (conn.closed or conn.detached or conn.dead), f"{conn!r} handed out unusable"
            assert self.clock() < conn.opened_at + MAX_LIFETIME, f"{conn!r} handed out past its lifetime"
            assert self.pool.was_reused(conn) == (conn.resets > 0)
            self.held[conn] = self.clock()
            self.requests += 1

    def _return(self, conn: FakeConnection, broken: bool) -> None:
        self.usage_ms += (self.clock() - self.held.pop(conn)) * 1000
        self.returned_at[conn] = self.clock()
        self.pool.putconn(conn, broken=broken)
        if broken:
            self.bad_returns += 1
            self.bad_returns_while_open += not self.closed
        if broken or self.closed or self.clock() >= conn.opened_at + MAX_LIFETIME:
            assert conn.closed

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def checkin(self, data: st.DataObject) -> None:
        self._return(data.draw(st.sampled_from(sorted(self.held, key=_by_number))), broken=False)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def checkin_broken(self, data: st.DataObject) -> None:
        self._return(data.draw(st.sampled_from(sorted(self.held, key=_by_number))), broken=True)

    @rule(seconds=_durations)
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def run_maintenance(self) -> None:
        self.pool.run_maintenance()
        if self.closed:
            return
        self._note_connect_errors()
        now = self.clock()
        idle = self.factory.open - set(self.held)
        assert all(now < conn.opened_at + MAX_LIFETIME for conn in idle), "an expired idle connection kept"
        stats = self.pool.get_stats()
        idled_out = [c for c in idle if now - self.returned_at.get(c, c.opened_at) >= MAX_IDLE]
        assert not idled_out or stats["pool_size"] <= MIN_SIZE, f"{idled_out} kept above min_size"
        backed_off = self.last_connect_error is not None and now - self.last_connect_error < BACKOFF_MAX
        if self.factory.always_fail is None and not backed_off:
            assert stats["pool_size"] >= MIN_SIZE, "min_size not refilled"

    @precondition(lambda self: self.factory.open)
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        data.draw(st.sampled_from(sorted(self.factory.open, key=_by_number))).dead = True

    @rule(failing=st.booleans())
    def connect_fails(self, failing: bool) -> None:
        self.factory.always_fail = ConnectError("Can't connect to MySQL server") if failing else None

    @rule()
    def pop_stats(self) -> None:
        stats = self.pool.pop_stats()
        self.popped.update({key: stats[key] for key in COUNTERS})
        self.pops += 1
        assert self.pool.get_stats()["pool_size"] == stats["pool_size"]

    @rule()
    def close(self) -> None:
        if not self.closed:
            self.closes_before_close = self.factory.closes
        self.pool.close()
        self.closed = True
        assert self.factory.open == set(self.held), "close() left idle connections open"

    # -- invariants ------------------------------------------------------------------

    def _note_connect_errors(self) -> None:
        if self.factory.connect_errors > self.seen_connect_errors:
            self.seen_connect_errors = self.factory.connect_errors
            self.last_connect_error = self.clock()

    @invariant()
    def sizes_match_the_factory(self) -> None:
        self._note_connect_errors()
        stats = self.pool.get_stats()
        assert self.factory.peak_open <= MAX_SIZE
        assert stats["pool_size"] == len(self.factory.open)  # between steps no slot is reserved
        assert self.pool._opening == 0  # nor is any connect still counted as running
        assert stats["connections_in_use"] == len(self.held)
        assert set(self.held) <= self.factory.open
        assert stats["requests_waiting"] == 0
        if self.closed:
            assert stats["pool_available"] == 0
        else:
            assert stats["pool_available"] + stats["connections_in_use"] == stats["pool_size"]

    def _totals(self) -> dict[str, int]:
        """Every counter since the start: what ``pop_stats()`` took plus what is left."""
        current = self.pool.get_stats()
        return {key: self.popped[key] + current[key] for key in COUNTERS}

    def _check_checkout_counters(self, total: dict[str, int]) -> None:
        """The counters both placements keep alike."""
        assert total["requests_num"] == self.requests
        assert total["requests_timeouts"] == self.timeouts
        assert total["returns_bad"] == self.bad_returns
        # float milliseconds added up, truncated at each pop_stats() and at the end
        assert 0 <= self.usage_ms - total["usage_ms"] < self.pops + 1 + 1e-6
        assert total["connections_num"] == self.factory.connects
        assert total["resets_num"] == total["resets_reset_connection"] == self.factory.resets_ok

    @invariant()
    def counters_match_what_happened(self) -> None:
        total = self._totals()
        factory = self.factory
        self._check_checkout_counters(total)
        assert total["requests_errors"] == self.timeouts + self.checkout_connect_errors
        assert total["connections_errors"] == factory.connect_errors
        assert total["resets_failed"] == total["connections_lost"] == factory.resets_failed
        assert total["closes_broken"] == self.bad_returns_while_open + factory.resets_failed
        closes = total["closes_lifetime"] + total["closes_idle"] + total["closes_broken"]
        assert closes == (self.closes_before_close if self.closed else factory.closes)


PoolMachine.TestCase.settings = settings(max_examples=75, stateful_step_count=40, deadline=None, database=None)
TestPoolMachine = PoolMachine.TestCase


class CheckinPoolMachine(PoolMachine):
    """The default placement: reset at checkin, validation at checkout.

    Dead connections are found by the zero-round-trip check (returned within
    the validation window) or the ping (idle longer), or by the reset when
    returned; reclaiming abandoned checkouts is tested in ``test_pool.py``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pool.close()
        self.clock = FakeClock()
        self.factory = FakeFactory(self.clock, max_open=MAX_SIZE)
        self.pool = self.factory.pool(
            name="checkin",
            reset_on="checkin",
            alive=self.factory.alive,
            check=self.factory.ping,
            min_size=MIN_SIZE,
            max_size=MAX_SIZE,
            timeout=0,
            max_idle=MAX_IDLE,
            max_lifetime=MAX_LIFETIME,
        )
        start(self.pool)

    def _return(self, conn: FakeConnection, broken: bool) -> None:
        dead = conn.dead
        super()._return(conn, broken)
        if dead and not broken and not self.closed:
            assert conn.closed, "a connection whose reset failed was kept"
        elif not conn.closed:  # (closed: expired, early by the lifetime jitter)
            assert conn.resets > 0, "returned without a reset"

    @invariant()
    def counters_match_what_happened(self) -> None:
        total = self._totals()
        factory = self.factory
        self._check_checkout_counters(total)
        assert total["resets_failed"] == factory.resets_failed
        assert total["checks_ping"] == factory.pings_ok
        assert total["checks_fast"] == factory.alive_ok  # counted in the checkout's hold, taken back if dead
        assert total["checks_failed"] == factory.pings_failed + factory.alive_failed
        assert total["connections_lost"] == total["resets_failed"] + total["checks_failed"]
        assert total["closes_broken"] == self.bad_returns_while_open + total["connections_lost"]


CheckinPoolMachine.TestCase.settings = settings(max_examples=75, stateful_step_count=40, deadline=None, database=None)
TestCheckinPoolMachine = CheckinPoolMachine.TestCase
