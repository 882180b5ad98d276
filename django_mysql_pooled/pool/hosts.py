"""Several servers behind one alias: each host's health, and which host a new connection goes to.

Policies (``OPTIONS["pool"]["policy"]``):

* ``"failover"`` (default): a new connection goes to the first host, in the
  configured order, that is up. When an earlier host is up again, a
  connection to a later one is retired as it is returned (not all at once):
  the pool moves back one checkout at a time. A connection to a host marked
  down is retired as it is returned too, whatever the policy.
* ``"balance"``: a new connection goes to the up host with the fewest open
  connections (ties: the configured order), for a multi-primary cluster
  (Galera). Connections are not moved once open.

A host is *down* after a connect to it failed with an error that says the
server is unusable (the classifier is injected: ``session/hosts.py`` for
MySQL). Such an error on an open connection (its reset, check or a
statement) only makes the host *suspected*: it stays up and is probed at
once, and goes down only if the probe fails too (one session's error, a
connection an administrator killed, must not take a server out). Down lasts
a backoff that
starts at ``host_backoff`` seconds, doubles at each consecutive failure up to
``host_backoff_max`` and is jittered by +-25 %, so that processes do not
probe in step. When it ends, a background probe opens one connection to the
host; only when that succeeds is the host *up* again. When every host is
down, a connect still tries them all, the one whose backoff ends first
first: the pool's own bookkeeping never refuses a connection the servers
would give (MariaDB Connector/J's host blacklist behaves the same way).

Everything here is called with the pool's lock held: no lock of its own.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Final

__all__ = ["BALANCE", "DOWN", "FAILOVER", "POLICIES", "PROBING", "UP", "Host", "HostSet"]

UP: Final = "up"
DOWN: Final = "down"
PROBING: Final = "probing"

FAILOVER: Final = "failover"
BALANCE: Final = "balance"
POLICIES: Final = (FAILOVER, BALANCE)

#: A backoff is multiplied by a random factor in [1 - JITTER, 1 + JITTER].
JITTER = 0.25
#: Seconds: the least ``host_backoff`` (a smaller one, 0 included, is raised to it).
MIN_BACKOFF = 0.1


class Host:
    """One server of the alias and what the pool knows of it.

    :ivar label: ``"host:port"``, as in logs, stats and the Prometheus ``host`` label.
    :ivar index: its place in the configured order (0: preferred).
    :ivar state: :data:`UP`, :data:`DOWN` or :data:`PROBING`.
    :ivar down_until: clock seconds when a down host gets its probe.
    :ivar reason: why it was last marked down (the error), ``""`` while up.
    :ivar open: connections to it the pool holds (idle, in use, being reset).
    """

    __slots__ = (
        "backoff",
        "connections_errors",
        "down_until",
        "failovers",
        "index",
        "label",
        "marked_down",
        "open",
        "reason",
        "state",
        "suspected",
    )

    def __init__(self, label: str, index: int) -> None:
        self.label, self.index = label, index
        self.state: str = UP
        self.suspected = False  # up, but an error on one of its connections asks for a probe
        self.down_until = 0.0
        self.backoff = 0.0
        self.reason = ""
        self.open = 0
        self.marked_down = 0  # times it went from up to down
        self.connections_errors = 0  # failed connects to it (probes included)
        self.failovers = 0  # connects that moved on from it to another host

    def __repr__(self) -> str:
        return f"<Host {self.label} {self.state} open={self.open}>"


class HostSet:
    """The hosts of one alias, their states and the policy that picks one.

    :param labels: ``"host:port"`` strings, in the configured order (at least two).
    :param policy: :data:`FAILOVER` or :data:`BALANCE`.
    :param backoff: seconds a host stays down after its first failure (at least :data:`MIN_BACKOFF`).
    :param backoff_max: the cap (seconds) of the doubling backoff.
    :raises ValueError: an unknown policy, fewer than two hosts, a repeated host.
    """

    def __init__(self, labels: Sequence[str], *, policy: str, backoff: float, backoff_max: float) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if len(labels) < 2 or len(set(labels)) != len(labels):
            raise ValueError(f"need two or more distinct hosts, got {list(labels)!r}")
        self.policy = policy
        # Never below MIN_BACKOFF: a zero backoff would never grow and probe a dead host forever.
        self.backoff = max(backoff, MIN_BACKOFF)
        self.backoff_max = max(self.backoff, backoff_max)
        self.hosts = tuple(Host(label, index) for index, label in enumerate(labels))

    def __repr__(self) -> str:
        return f"<HostSet {self.policy} {list(self.hosts)!r}>"

    def candidates(self) -> list[Host]:
        """The hosts a new connection tries, in order: up ones by the policy, then the others
        (the one whose backoff ends first first)."""
        up = [host for host in self.hosts if host.state == UP]
        if self.policy == BALANCE:
            up.sort(key=lambda host: (host.open, host.index))
        rest = sorted((host for host in self.hosts if host.state != UP), key=lambda host: host.down_until)
        return up + rest

    def mark_down(self, host: Host, now: float, reason: str) -> bool:
        """Mark *host* down (again) for a growing, jittered backoff; return whether it was up."""
        was_up = host.state == UP
        host.backoff = self.backoff if was_up else min(max(host.backoff * 2, self.backoff), self.backoff_max)
        host.down_until = now + host.backoff * (1 + JITTER * (2 * random.random() - 1))  # noqa: S311
        host.state, host.suspected = DOWN, False
        host.reason = reason
        if was_up:
            host.marked_down += 1
        return was_up

    def mark_up(self, host: Host) -> bool:
        """Mark *host* up (a connect to it succeeded); return whether it was not."""
        was_down = host.state != UP
        host.state, host.reason, host.backoff, host.down_until = UP, "", 0.0, 0.0
        return was_down

    def suspect(self, host: Host) -> bool:
        """Ask for a probe of *host*, which stays up meanwhile; return whether it was not asked yet.

        For an error on an open connection (a lost connection, 1047, 1290):
        it may be that one session's (killed by an administrator, a tenant's
        ``SIGNAL``, ``secure_file_priv``) and not the server's; the probe
        (a new connection and a query) decides.
        """
        if host.state != UP or host.suspected:
            return False
        host.suspected = True
        return True

    def due_probes(self, now: float) -> list[Host]:
        """The hosts to probe now: down ones whose backoff has ended (marked :data:`PROBING`)
        and suspected up ones (no longer suspected: a new error asks again)."""
        due = []
        for host in self.hosts:
            if host.state == DOWN and now >= host.down_until:
                host.state = PROBING
                due.append(host)
            elif host.state == UP and host.suspected:
                host.suspected = False
                due.append(host)
        return due

    def retire(self, host: Host) -> bool:
        """Whether a returned connection to *host* should be closed: *host* is not up (it was
        marked down while the connection was checked out) while another is, or, with
        ``failover``, an earlier host is up (the pool moves back to it)."""
        if host.state != UP:
            return any(other.state == UP for other in self.hosts)  # with none up, keep what works
        return self.policy == FAILOVER and any(other.state == UP for other in self.hosts[: host.index])

    def state_of(self, host: Host, now: float) -> tuple[str, float]:
        """``(state, retry_in)``: *retry_in* is the seconds until a down host's probe (0 otherwise)."""
        return host.state, max(host.down_until - now, 0.0) if host.state == DOWN else 0.0
