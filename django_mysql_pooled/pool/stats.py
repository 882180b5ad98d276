"""Every statistic a pool reports, defined once: name, kind, unit and meaning.

The pool counts with these constants, :meth:`~.state.PoolState.get_stats`
returns them, and the snapshots, ``manage.py poolstats``, the Prometheus
collectors and the docs' statistics reference all read :data:`STATS` (a test
checks that the docs list every key). Names follow psycopg_pool where one
exists; a key ending in ``_ms`` is in milliseconds.
"""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

__all__ = ["BY_NAME", "COUNTERS", "GAUGES", "HOST_STATS", "RESET_KEYS", "STATS", "Stat", "reset_key"]


@dataclasses.dataclass(frozen=True)
class Stat:
    """One statistic.

    :ivar name: the key in ``get_stats()`` (``str``).
    :ivar kind: ``"gauge"`` (a current value, computed when read) or
        ``"counter"`` (only grows, until ``pop_stats()``).
    :ivar unit: what one unit counts, e.g. ``"connections"``, ``"milliseconds"``.
    :ivar help: one sentence, the metric's Prometheus ``HELP`` text.
    :ivar late: the key appears at its first count (not in a new pool's stats).
    """

    name: str
    kind: Literal["gauge", "counter"]
    unit: str
    help: str
    late: bool = False


# -- sizes (gauges) ----------------------------------------------------------
POOL_MIN: Final = "pool_min"
POOL_MAX: Final = "pool_max"
POOL_SIZE: Final = "pool_size"
POOL_AVAILABLE: Final = "pool_available"
CONNECTIONS_IN_USE: Final = "connections_in_use"
REQUESTS_WAITING: Final = "requests_waiting"
REQUESTS_LONGEST_WAIT_MS: Final = "requests_longest_wait_ms"
# -- requests -------------------------------------------------------------------
REQUESTS_NUM: Final = "requests_num"
REQUESTS_QUEUED: Final = "requests_queued"
REQUESTS_WAIT_MS: Final = "requests_wait_ms"
REQUESTS_ERRORS: Final = "requests_errors"
REQUESTS_TIMEOUTS: Final = "requests_timeouts"
REQUESTS_REJECTED: Final = "requests_rejected"
USAGE_MS: Final = "usage_ms"
RETURNS_BAD: Final = "returns_bad"
RETURNS_ROLLED_BACK: Final = "returns_rolled_back"
RETURNS_RECLAIMED: Final = "returns_reclaimed"
# -- connections ------------------------------------------------------------------
CONNECTIONS_NUM: Final = "connections_num"
CONNECTIONS_MS: Final = "connections_ms"
CONNECTIONS_ERRORS: Final = "connections_errors"
CONNECTIONS_LOST: Final = "connections_lost"
CLOSES_LIFETIME: Final = "closes_lifetime"
CLOSES_IDLE: Final = "closes_idle"
CLOSES_BROKEN: Final = "closes_broken"
# -- checks at checkout ---------------------------------------------------------------
CHECKS_FAST: Final = "checks_fast"
CHECKS_PING: Final = "checks_ping"
CHECKS_FAILED: Final = "checks_failed"
# -- resets ------------------------------------------------------------------------
RESETS_NUM: Final = "resets_num"
RESETS_MS: Final = "resets_ms"
RESETS_FAILED: Final = "resets_failed"
RESETS_RESET_CONNECTION: Final = "resets_reset_connection"
RESETS_CHANGE_USER: Final = "resets_change_user"
RESETS_RECONNECT: Final = "resets_reconnect"
RESETS_PING: Final = "resets_ping"
# -- leaks and cancellation ------------------------------------------------------------
LEAKS_DETECTED: Final = "leaks_detected"
QUERIES_CANCELLED: Final = "queries_cancelled"
KILLS_SENT: Final = "kills_sent"
KILLS_LATE: Final = "kills_late"
KILLS_DENIED: Final = "kills_denied"
KILLS_WRONG_SERVER: Final = "kills_wrong_server"
KILLS_FAILED: Final = "kills_failed"
KILLS_UNANSWERED: Final = "kills_unanswered"
# -- several hosts (hosts.py) -----------------------------------------------------------
FAILOVERS: Final = "failovers"
CLOSES_FAILBACK: Final = "closes_failback"
CLOSES_HOST_DOWN: Final = "closes_host_down"
# -- per host only (get_host_stats()) ----------------------------------------------------
HOST_UP: Final = "host_up"
HOST_RETRY_IN_MS: Final = "host_retry_in_ms"
HOST_MARKED_DOWN: Final = "host_marked_down"

#: Every statistic, in the order of the docs' reference.
STATS: Final[tuple[Stat, ...]] = (
    Stat(POOL_MIN, "gauge", "connections", "min_size: connections kept open while idle."),
    Stat(POOL_MAX, "gauge", "connections", "max_size: the cap on open connections in this process."),
    Stat(POOL_SIZE, "gauge", "connections", "Open connections plus slots reserved by checkouts opening one."),
    Stat(POOL_AVAILABLE, "gauge", "connections", "Idle connections, ready to be checked out."),
    Stat(CONNECTIONS_IN_USE, "gauge", "connections", "Connections checked out now."),
    Stat(REQUESTS_WAITING, "gauge", "requests", "Checkouts waiting for a connection now."),
    Stat(REQUESTS_LONGEST_WAIT_MS, "gauge", "milliseconds", "How long the oldest waiting checkout has waited."),
    Stat(REQUESTS_NUM, "counter", "requests", "Checkouts served."),
    Stat(REQUESTS_QUEUED, "counter", "requests", "Checkouts that had to wait for a connection."),
    Stat(REQUESTS_WAIT_MS, "counter", "milliseconds", "Time checkouts spent waiting in the queue."),
    Stat(REQUESTS_ERRORS, "counter", "requests", "Checkouts that failed (timed out, rejected, connect failed)."),
    Stat(REQUESTS_TIMEOUTS, "counter", "requests", "Checkouts that raised PoolTimeout."),
    Stat(REQUESTS_REJECTED, "counter", "requests", "Checkouts that raised TooManyRequests (max_waiting)."),
    Stat(USAGE_MS, "counter", "milliseconds", "Time connections were checked out."),
    Stat(RETURNS_BAD, "counter", "connections", "Connections returned broken and closed."),
    Stat(RETURNS_ROLLED_BACK, "counter", "connections", "Connections returned inside a transaction, rolled back."),
    Stat(RETURNS_RECLAIMED, "counter", "connections", "Checkouts taken back from an owner gone without close()."),
    Stat(CONNECTIONS_NUM, "counter", "connections", "Server connections opened."),
    Stat(CONNECTIONS_MS, "counter", "milliseconds", "Time spent opening server connections."),
    Stat(CONNECTIONS_ERRORS, "counter", "connections", "Attempts to open a connection that failed."),
    Stat(CONNECTIONS_LOST, "counter", "connections", "Connections found dead or unusable by a reset or check."),
    Stat(CLOSES_LIFETIME, "counter", "connections", "Connections closed at max_lifetime."),
    Stat(CLOSES_IDLE, "counter", "connections", "Connections closed after max_idle above min_size."),
    Stat(CLOSES_BROKEN, "counter", "connections", "Connections closed because they were broken."),
    Stat(CHECKS_FAST, "counter", "checkouts", "Checkouts validated by one poll() of the socket, no round trip."),
    Stat(CHECKS_PING, "counter", "checkouts", "Checkouts validated with a ping."),
    Stat(CHECKS_FAILED, "counter", "connections", "Connections found dead at checkout and replaced."),
    Stat(RESETS_NUM, "counter", "resets", "Session resets and restores that succeeded."),
    Stat(RESETS_MS, "counter", "milliseconds", "Time spent resetting and restoring sessions."),
    Stat(RESETS_FAILED, "counter", "resets", "Session resets or restores that failed or were cut off."),
    Stat(RESETS_RESET_CONNECTION, "counter", "resets", "Resets done with COM_RESET_CONNECTION."),
    Stat(RESETS_CHANGE_USER, "counter", "resets", "Resets done with COM_CHANGE_USER (the fallback)."),
    Stat(
        RESETS_RECONNECT,
        "counter",
        "checkouts",
        "Checkouts served by a new connection opened in a discarded one's stead.",
    ),
    Stat(RESETS_PING, "counter", "checkouts", "With reset False: reused connections only pinged.", late=True),
    Stat(LEAKS_DETECTED, "counter", "connections", "Checkouts held past leak_timeout or abandoned without close()."),
    Stat(QUERIES_CANCELLED, "counter", "queries", "cancellable() calls that raised QueryCancelled.", late=True),
    Stat(KILLS_SENT, "counter", "queries", "KILL QUERY statements the server accepted.", late=True),
    Stat(
        KILLS_LATE,
        "counter",
        "queries",
        "Kills that landed after the server completed the statement (a write's result was kept).",
        late=True,
    ),
    Stat(
        KILLS_DENIED,
        "counter",
        "queries",
        "KILL QUERY refused by the server: another user's connection (1095).",
        late=True,
    ),
    Stat(
        KILLS_WRONG_SERVER,
        "counter",
        "queries",
        "KILL QUERY not sent: the killer connection reached another server than the query's.",
        late=True,
    ),
    Stat(KILLS_FAILED, "counter", "queries", "KILL QUERY not sent: the server could not be reached.", late=True),
    Stat(
        KILLS_UNANSWERED,
        "counter",
        "queries",
        "KILL QUERY sent, its answer lost: it may land later, so the connection is closed, not reused.",
        late=True,
    ),
    Stat(
        FAILOVERS,
        "counter",
        "connections",
        "New connections opened on another host after a connect to a host failed (several hosts).",
        late=True,
    ),
    Stat(
        CLOSES_FAILBACK,
        "counter",
        "connections",
        "Connections to a later host closed at checkin because an earlier one is up again (failover).",
        late=True,
    ),
    Stat(
        CLOSES_HOST_DOWN,
        "counter",
        "connections",
        "Connections closed because their host was marked down: idle ones at once, others at checkin.",
        late=True,
    ),
)

#: The statistics of each host of a pool with several hosts (``get_host_stats()``): the
#: sizes mean the same as the pool's, counted for the host.
HOST_STATS: Final[tuple[Stat, ...]] = (
    Stat(HOST_UP, "gauge", "hosts", "1 while the host is up, 0 while it is down or being probed."),
    Stat(HOST_RETRY_IN_MS, "gauge", "milliseconds", "How long until a down host is probed (0 otherwise)."),
    Stat(POOL_SIZE, "gauge", "connections", "Open connections to the host."),
    Stat(POOL_AVAILABLE, "gauge", "connections", "Idle connections to the host."),
    Stat(CONNECTIONS_IN_USE, "gauge", "connections", "Connections to the host checked out now."),
    Stat(CONNECTIONS_ERRORS, "counter", "connections", "Attempts to open a connection to the host that failed."),
    Stat(HOST_MARKED_DOWN, "counter", "times", "Times the host went from up to down."),
    Stat(FAILOVERS, "counter", "connections", "New connections that moved on from this host to another."),
)

#: The statistics by name.
BY_NAME: Final = {stat.name: stat for stat in STATS}
#: The names of the gauges (current values; every other key is a counter).
GAUGES: Final = frozenset(stat.name for stat in STATS if stat.kind == "gauge")
#: The counters every pool starts with (the late ones appear at their first count).
COUNTERS: Final = tuple(stat.name for stat in STATS if stat.kind == "counter" and not stat.late)


#: The counter of each reset method a reset callable may return.
RESET_KEYS: Final = {
    "reset_connection": RESETS_RESET_CONNECTION,
    "change_user": RESETS_CHANGE_USER,
    "reconnect": RESETS_RECONNECT,
    "ping": RESETS_PING,
}


def reset_key(method: str) -> str:
    """The counter of resets done by *method* (what a reset callable returned).

    :raises KeyError: *method* names no known reset method.
    """
    try:
        return RESET_KEYS[method]
    except KeyError:
        raise KeyError(f"unknown reset method {method!r}") from None
