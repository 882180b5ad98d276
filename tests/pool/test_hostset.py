"""HostSet: the order a new connection tries the hosts in, backoffs, probes due, failback (no pool)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_mysql_pooled.pool.hosts import BALANCE, DOWN, FAILOVER, PROBING, UP, HostSet
from tests.pool.fake_hosts import A, B, C


def down_set(*labels: str, policy: str = FAILOVER, backoff: float = 1.0, backoff_max: float = 30.0) -> HostSet:
    return HostSet(list(labels), policy=policy, backoff=backoff, backoff_max=backoff_max)


@pytest.mark.parametrize(
    ("labels", "policy", "message"),
    [
        ([A, B], "roundrobin", "policy must be one of ('failover', 'balance'), got 'roundrobin'"),
        ([A], FAILOVER, "need two or more distinct hosts, got ['a:3306']"),
        ([A, A], FAILOVER, "need two or more distinct hosts, got ['a:3306', 'a:3306']"),
    ],
)
def test_hostset_refuses_what_cannot_fail_over(labels: list[str], policy: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        HostSet(labels, policy=policy, backoff=1.0, backoff_max=2.0)


def test_failover_candidates_are_the_configured_order_then_the_down_ones_by_probe_time(no_jitter: None) -> None:
    hosts = down_set(A, B, C)
    a, b, c = hosts.hosts
    assert hosts.candidates() == [a, b, c]
    hosts.mark_down(b, 100.0, "refused")
    hosts.mark_down(a, 100.5, "refused")
    assert hosts.candidates() == [c, b, a]  # b's backoff ends first
    hosts.mark_down(b, 101.0, "refused again")  # 2 s from 101: now after a's
    assert hosts.candidates() == [c, a, b]
    hosts.mark_up(a)
    assert hosts.candidates() == [a, c, b]


def test_balance_candidates_are_the_fewest_open_first_ties_in_order() -> None:
    hosts = down_set(A, B, C, policy=BALANCE)
    a, b, c = hosts.hosts
    assert hosts.candidates() == [a, b, c]
    a.open, b.open, c.open = 2, 1, 1
    assert hosts.candidates() == [b, c, a]
    hosts.mark_down(b, 0.0, "refused")
    assert hosts.candidates() == [c, a, b]  # a down host last, whatever its count


def test_backoff_doubles_per_failure_up_to_the_cap_and_starts_over_once_up(no_jitter: None) -> None:
    hosts = down_set(A, B, backoff=0.5, backoff_max=3.0)
    a = hosts.hosts[0]
    seen: list[tuple[float, float]] = []
    for _ in range(5):
        assert hosts.mark_down(a, 10.0, "refused") is (not seen)  # only the first one was a change
        seen.append((a.backoff, a.down_until))
    assert seen == [(0.5, 10.5), (1.0, 11.0), (2.0, 12.0), (3.0, 13.0), (3.0, 13.0)]
    assert (a.state, a.reason, a.marked_down) == (DOWN, "refused", 1)
    assert hosts.mark_up(a) is True
    assert hosts.mark_up(a) is False
    assert (a.state, a.reason, a.backoff, a.down_until) == (UP, "", 0.0, 0.0)
    hosts.mark_down(a, 20.0, "refused")
    assert (a.backoff, a.down_until, a.marked_down) == (0.5, 20.5, 2)


def test_a_backoff_below_a_tenth_of_a_second_is_raised_to_it_so_it_grows(no_jitter: None) -> None:
    hosts = down_set(A, B, backoff=0.0, backoff_max=0.3)
    a = hosts.hosts[0]
    seen = []
    for _ in range(4):
        hosts.mark_down(a, 0.0, "refused")
        seen.append(a.backoff)
    assert seen == [0.1, 0.2, 0.3, 0.3]


def test_a_cap_below_the_backoff_is_the_backoff(no_jitter: None) -> None:
    hosts = down_set(A, B, backoff=5.0, backoff_max=1.0)
    a = hosts.hosts[0]
    hosts.mark_down(a, 0.0, "x")
    hosts.mark_down(a, 0.0, "x")
    assert a.backoff == 5.0


@given(draw=st.floats(0.0, 1.0, exclude_max=True), failures=st.integers(1, 8))
def test_jitter_stays_within_a_quarter_of_the_backoff(draw: float, failures: int) -> None:
    hosts = down_set(A, B, backoff=1.0, backoff_max=16.0)
    a = hosts.hosts[0]
    saved = random.random
    random.random = lambda: draw  # hosts.py draws from the random module
    try:
        for _ in range(failures):
            hosts.mark_down(a, 100.0, "x")
    finally:
        random.random = saved
    nominal = min(2.0 ** (failures - 1), 16.0)
    assert a.backoff == nominal
    assert 100.0 + 0.75 * nominal <= a.down_until <= 100.0 + 1.25 * nominal
    assert a.down_until == pytest.approx(100.0 + nominal * (1 + 0.25 * (2 * draw - 1)))


def test_due_probes_are_the_down_hosts_whose_backoff_ended_marked_probing(no_jitter: None) -> None:
    hosts = down_set(A, B, C, backoff=2.0)
    a, b, c = hosts.hosts
    hosts.mark_down(a, 0.0, "x")
    hosts.mark_down(b, 1.0, "x")
    assert hosts.due_probes(1.999) == []
    assert hosts.state_of(a, 1.5) == (DOWN, 0.5)
    assert hosts.due_probes(2.0) == [a]
    assert (a.state, b.state, c.state) == (PROBING, DOWN, UP)
    assert hosts.state_of(a, 2.5) == (PROBING, 0.0)  # no retry time while its probe runs
    assert hosts.due_probes(10.0) == [b]  # a is being probed: not handed out twice
    assert hosts.state_of(c, 10.0) == (UP, 0.0)


def test_retire_closes_a_connection_to_a_host_not_up_and_with_failover_to_a_later_host() -> None:
    hosts = down_set(A, B, C)
    a, b, c = hosts.hosts
    assert [hosts.retire(h) for h in (a, b, c)] == [False, True, True]  # a is up: b and c retire
    hosts.mark_down(a, 0.0, "x")
    assert [hosts.retire(h) for h in (a, b, c)] == [True, False, True]  # a is down: its own retire
    hosts.mark_down(b, 0.0, "x")
    assert [hosts.retire(h) for h in (a, b, c)] == [True, True, False]
    hosts.due_probes(100.0)  # probing is not up
    assert (a.state, hosts.retire(a), hosts.retire(c)) == (PROBING, True, False)
    hosts.mark_down(c, 0.0, "x")
    assert [hosts.retire(h) for h in (a, b, c)] == [False, False, False]  # none up: keep what works
    balanced = down_set(A, B, policy=BALANCE)
    assert [balanced.retire(h) for h in balanced.hosts] == [False, False]
    balanced.mark_down(balanced.hosts[1], 0.0, "x")
    assert [balanced.retire(h) for h in balanced.hosts] == [False, True]


def test_a_suspected_host_stays_up_and_is_probed_at_the_next_round_once(no_jitter: None) -> None:
    hosts = down_set(A, B)
    a, b = hosts.hosts
    assert hosts.suspect(a) is True
    assert hosts.suspect(a) is False  # asked already
    assert (a.state, hosts.candidates(), hosts.retire(a)) == (UP, [a, b], False)
    assert hosts.due_probes(0.0) == [a]
    assert (a.state, a.suspected) == (UP, False)
    assert hosts.due_probes(0.0) == []
    assert hosts.suspect(a) is True  # a new error asks again
    hosts.mark_down(a, 0.0, "probe failed")
    assert (a.state, a.suspected, hosts.suspect(a)) == (DOWN, False, False)  # a down host is not suspected
