"""A Hypothesis state machine over a pool with three hosts, against a model of the fake servers.

The rules check connections out and in, fail statements with a host-level
error, take servers down (their connections die), fill them up (new connects
refused, open connections unharmed: MySQL's 1040), bring them back, probe,
move the clock and run maintenance. The model knows the truth (which servers
accept connections, which connections are alive, who holds what); the pool
only knows what it saw. The invariants:

* **Alive**: a checkout never gets a dead or closed connection; connections
  to a server that went down die with it, so none of them is handed out even
  before the pool has noticed (the checkout's validation is what notices).
* **The pool's view**: a connection handed out, or kept at checkin, is to
  a host the pool holds *up*, unless no host is up (a connection that was
  checked out when its host was marked down is closed at checkin while
  another host is up, HOST-1; with none up, what works is kept, HOST-19).
* **Placement**: a new connection goes (failover) to the first host that
  accepts it, every earlier one now not up; (balance) to an up host with the
  fewest open connections. A connection returned to a later host while an
  earlier one is up is closed (failover; never with balance).
* **Counts**: the pool's size equals the open connections, idle plus in use;
  each host's open, idle and in-use counts equal the model's; no connection
  is held twice; at most ``max_size`` open (plus the probe's, HOST-6).
* **Probes**: after a probe round every due host (down past its backoff, or
  suspected after an error on one of its connections) is up if its server
  accepts connections, else down with its next probe in the future; an
  error on an open connection never takes a host down by itself.
"""

from __future__ import annotations

from typing import Any, cast

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from django_mysql_pooled.pool.hosts import BALANCE, DOWN, FAILOVER, UP
from tests.pool.fake_connections import FakeClock, FakeConnection, start
from tests.pool.fake_hosts import FakeHosts, HostDown, NotTheHost, host_of, quiet_prober

LABELS = ["a:1", "b:2", "c:3"]
MAX_SIZE = 4
_labels = st.sampled_from(LABELS)


def _by_number(conn: FakeConnection) -> int:
    return conn.number


class HostsMachine(RuleBasedStateMachine):
    """Failover, reset at checkout; subclasses change the policy and the placement."""

    policy = FAILOVER

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        # + 1: a probe connects before it knows whether the pool has room (HOST-6).
        self.servers = FakeHosts(LABELS, self.clock, max_open=MAX_SIZE + 1)
        with quiet_prober():
            self.pool = self.servers.pool(policy=self.policy, max_size=MAX_SIZE, timeout=30.0, **self.options())
            start(self.pool)
        self.held: set[FakeConnection] = set()
        self.pending_logins = 0  # NotTheHost failures queued on the servers
        self.states = self.host_states()

    def options(self) -> dict[str, Any]:
        return {}

    def queued_logins(self) -> int:
        return sum(len(failures) for failures in self.servers.host_failures.values())

    def teardown(self) -> None:
        self.pool.close()
        assert self.servers.violations == []

    # -- the pool's view ------------------------------------------------------------

    def host_states(self) -> dict[str, object]:
        return {label: values["state"] for label, values in self.pool.get_host_stats().items()}

    def up(self, label: str) -> bool:
        return self.pool.get_host_stats()[label]["state"] == UP

    def count(self, label: str, key: str) -> int:
        return cast(int, self.pool.get_host_stats()[label][key])

    def note_states(self) -> None:
        self.states = self.host_states()

    # -- rules ------------------------------------------------------------------

    @precondition(lambda self: len(self.held) < MAX_SIZE)
    @rule()
    def checkout(self) -> None:
        made = len(self.servers.made)
        try:
            conn = self.pool.getconn()
        except HostDown:
            assert self.servers.down == set(LABELS), "gave up with a server accepting connections"
            self.note_states()
            return
        except NotTheHost:
            assert self.pending_logins > 0
            self.note_states()
            return
        finally:
            self.pending_logins = self.queued_logins()
        self.note_states()
        assert conn not in self.held, f"{conn!r} handed out twice"
        assert not (conn.closed or conn.dead), f"{conn!r} handed out unusable"
        label = host_of(conn)
        if any(self.states[other] == UP for other in LABELS):
            assert self.up(label), f"{conn!r}: {label} is down"
        if len(self.servers.made) > made:  # a new connection
            self.check_placement(label)
        self.held.add(conn)

    def check_placement(self, label: str) -> None:
        if self.policy == FAILOVER:
            earlier = LABELS[: LABELS.index(label)]
            assert not any(self.up(other) for other in earlier), f"opened on {label} with an earlier host up"
        else:
            mine = self.count(label, "pool_size")
            for other in LABELS:
                if other != label and self.up(other):
                    assert mine - 1 <= self.count(other, "pool_size"), f"opened on {label}, {other} had fewer"

    def _return(self, conn: FakeConnection, broken: bool) -> None:
        self.held.discard(conn)
        dead = conn.dead
        self.pool.putconn(conn, broken=broken)
        self.note_states()
        label = host_of(conn)
        earlier_up = any(self.up(other) for other in LABELS[: LABELS.index(label)])
        any_up = any(self.up(other) for other in LABELS)
        if broken or (dead and self.pool.resets_on_checkin) or (any_up and not self.up(label)):
            assert conn.closed, f"kept {conn!r}: broken, dead, or {label} not up while another is"
        elif not any_up or self.policy == BALANCE:  # no host up: keep what works (HOST-19); balance never retires
            assert not conn.closed or dead or self.clock() >= conn.opened_at + 3600.0 * 0.95, f"{conn!r} closed"
        elif not conn.closed:
            assert not earlier_up, f"{conn!r} to {label} kept with an earlier host up"

    @precondition(lambda self: self.held)
    @rule(data=st.data(), broken=st.booleans())
    def checkin(self, data: st.DataObject, broken: bool) -> None:
        self._return(data.draw(st.sampled_from(sorted(self.held, key=_by_number))), broken)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def statement_fails_on_the_host(self, data: st.DataObject) -> None:
        """A host-level statement error (1047, 1290 with require_primary): Django returns it broken."""
        conn = data.draw(st.sampled_from(sorted(self.held, key=_by_number)))
        before = self.host_states()
        assert self.pool.connection_failed(conn, HostDown("(1047) WSREP has not yet prepared node")) is True
        assert self.host_states() == before, "an error on one connection changed a host's state"
        self._return(conn, broken=True)

    @rule(label=_labels)
    def server_dies(self, label: str) -> None:
        self.servers.take_down(label)

    @rule(label=_labels)
    def server_full(self, label: str) -> None:
        """New connects refused (1040); open connections unharmed."""
        self.servers.down.add(label)

    @rule(label=_labels)
    def server_back(self, label: str) -> None:
        self.servers.bring_up(label)

    @rule(label=_labels)
    def server_recovers(self, label: str) -> None:
        """Back, and probed once its longest backoff is over."""
        self.servers.bring_up(label)
        self.probe_round(40.0)

    @rule(label=_labels)
    def login_fails(self, label: str) -> None:
        self.servers.host_failures.setdefault(label, []).append(NotTheHost("(1045) Access denied"))
        self.pending_logins += 1

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 2.5, 40.0]))
    def probe_round(self, seconds: float) -> None:
        self.clock.advance(seconds)
        assert self.pool.hosts is not None
        due = [
            host.label
            for host in self.pool.hosts.hosts
            if (host.state == DOWN and self.clock() >= host.down_until) or (host.state == UP and host.suspected)
        ]
        logins = {label: bool(self.servers.host_failures.get(label)) for label in due}
        # A suspected host that is up goes down for the host's errors only (a refused login is not one).
        benign = {
            host.label
            for host in self.pool.hosts.hosts
            if host.state == UP
            and isinstance(next(iter(self.servers.host_failures.get(host.label) or []), None), NotTheHost)
        }
        # A suspected host that is up is not probed while the pool is full (never beyond max_size): full
        # before the round, or made full by an earlier host's probe in the same round.
        skipped = {host.label for host in self.pool.hosts.hosts if host.state == UP and host.suspected}
        full_before = self.pool.get_stats()["pool_size"] >= MAX_SIZE
        self.pool.probe_hosts()
        if not full_before and self.pool.get_stats()["pool_size"] < MAX_SIZE:
            skipped = set()
        self.note_states()
        self.pending_logins = self.queued_logins()
        for label in due:
            values = self.pool.get_host_stats()[label]
            if full_before and label in skipped:
                assert values["state"] == UP, f"{label}: probed beyond max_size, {values}"
            elif label in skipped and values["state"] == UP:
                pass  # skipped once an earlier probe of the round had filled the pool
            elif label in benign:  # the queued refusal answers the probe before the server's state
                assert values["state"] == UP, f"{label}: a refused login took it down, {values}"
            elif label in self.servers.down or logins[label]:
                assert values["state"] == DOWN and self.count(label, "host_retry_in_ms") > 0, f"{label}: {values}"
            else:
                assert values["state"] == UP, f"{label}: its server accepts connections, yet {values}"

    @rule(seconds=st.sampled_from([0.1, 1.0, 700.0, 4000.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def maintenance(self) -> None:
        self.pool.run_maintenance()
        self.note_states()

    # -- invariants ------------------------------------------------------------------

    @invariant()
    def sizes_match_the_servers(self) -> None:
        stats = self.pool.get_stats()
        assert stats["pool_size"] == len(self.servers.open)
        assert self.pool._opening == 0
        assert stats["connections_in_use"] == len(self.held)
        assert stats["pool_available"] + stats["connections_in_use"] == stats["pool_size"]
        assert self.servers.peak_open <= MAX_SIZE + 1
        assert stats["pool_size"] <= MAX_SIZE

    @invariant()
    def each_hosts_counts_match_its_connections(self) -> None:
        per_host = self.pool.get_host_stats()
        for label in LABELS:
            open_now = self.servers.open_on(label)
            in_use = {conn for conn in self.held if host_of(conn) == label}
            values = per_host[label]
            assert values["pool_size"] == len(open_now), f"{label}: {values}"
            assert values["connections_in_use"] == len(in_use)
            assert values["pool_available"] == len(open_now - in_use)


HostsMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None, database=None)
TestHostsMachine = HostsMachine.TestCase


class BalanceMachine(HostsMachine):
    policy = BALANCE


BalanceMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None, database=None)
TestBalanceMachine = BalanceMachine.TestCase


class CheckinHostsMachine(HostsMachine):
    """The default placement: reset at checkin (a failed one marks the host), validation at checkout."""

    def options(self) -> dict[str, Any]:
        return {"reset_on": "checkin", "alive": self.servers.alive, "check": self.servers.ping}


CheckinHostsMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None, database=None)
TestCheckinHostsMachine = CheckinHostsMachine.TestCase
