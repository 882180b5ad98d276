"""A pool over several hosts: connects that fail over, hosts marked down and probed, failback.

With ``hosts`` (a :class:`~.hosts.HostSet`) the pool opens a connection with
``connect_host(label, timeout)`` on the hosts :meth:`HostSet.candidates`
lists, in order, until one succeeds, all within the checkout's deadline:
each host gets an equal share of what is left of it (so a host that drops
packets cannot eat the whole ``timeout``; a refused connect fails at once).
An error the injected ``host_error`` classifies as the host's (nothing
listening, server gone, Galera node not ready, read-only where a primary is
required) marks the host down, closes its idle connections and moves on; any
other (bad password, unknown database: the same on every host) is raised at
once. Without ``hosts`` nothing here runs: one server costs what it did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django_mysql_pooled.pool import stats
from django_mysql_pooled.pool.hosts import UP, Host, HostSet
from django_mysql_pooled.pool.state import C, Entry, PoolState

__all__ = ["PROBE_INTERVAL", "HostError", "HostedPoolState", "probe_round"]

logger = logging.getLogger(__name__)

#: ``host_error(exc)``: why *exc* makes its host unusable (a short reason), ``None`` if it does not.
HostError = Callable[[BaseException], "str | None"]

#: Seconds between the prober's looks at the down hosts (it connects only when a backoff ended).
PROBE_INTERVAL = 0.1
#: Seconds a probe's connect may take at most (a host that drops packets must not stall the others').
PROBE_TIMEOUT = 5.0


def _any_error(exc: BaseException) -> str | None:
    return repr(exc) if isinstance(exc, Exception) else None


class HostedPoolState(PoolState[C]):
    """Pool bookkeeping plus the choice of a host for each new connection."""

    def __init__(
        self,
        connect: Callable[[float | None], C],
        close: Callable[[C], None],
        *,
        hosts: HostSet | None = None,
        connect_host: Callable[[str, float], C] | None = None,
        host_error: HostError | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(connect, close, **kwargs)
        if hosts is not None and connect_host is None:
            raise ValueError("a pool with several hosts needs connect_host")
        self._hosts = hosts
        self._connect_host = connect_host
        self._host_error: HostError = host_error or _any_error

    @property
    def hosts(self) -> HostSet | None:
        """The alias's hosts (``None``: one server)."""
        return self._hosts

    def _dial(self, deadline: float) -> tuple[C, Host | None]:
        hosts, connect_host = self._hosts, self._connect_host
        if hosts is None or connect_host is None:
            return super()._dial(deadline)
        with self._lock:
            order = hosts.candidates()
            order[0].open += 1  # counted while connecting: concurrent connects spread (balance)
        error: BaseException | None = None
        for tried, host in enumerate(order):
            left = deadline - self._clock()  # past it: each host still gets one short try
            if tried:
                with self._lock:
                    host.open += 1
            try:
                conn = connect_host(host.label, max(left, 0.0) / (len(order) - tried))
            except BaseException as exc:
                with self._lock:
                    host.open -= 1
                reason = self._host_error(exc) if isinstance(exc, Exception) else None
                if reason is None:
                    raise  # not the host's fault: the same everywhere
                self._mark_down(host, reason, connecting=True, moving_on=tried + 1 < len(order))
                error = exc
                continue
            with self._lock:
                if tried:
                    self._stats[stats.FAILOVERS] = self._stats.get(stats.FAILOVERS, 0) + 1
                revived = hosts.mark_up(host)
                stale = self._take_idle_of_down_hosts_locked() if revived else []
            if revived:
                logger.info("pool %r: host %s is up again", self.name, host.label)
                self._close_stale(stale)
            return conn, host
        assert error is not None  # noqa: S101 - at least one host was tried
        raise error

    def _mark_down(self, host: Host, reason: str, *, connecting: bool = False, moving_on: bool = False) -> None:
        """Mark *host* down and close its idle connections (unless no other host is up)."""
        hosts = self._hosts
        assert hosts is not None  # noqa: S101 - only a pool with hosts has a Host
        with self._lock:
            host.connections_errors += connecting
            host.failovers += moving_on
            newly = hosts.mark_down(host, self._clock(), reason)
            # With no host up, keep what works (a full server refuses new connections, not old ones).
            others_up = any(other.state == UP for other in hosts.hosts)
            idle = [entry for entry in self._idle if entry.host is host] if others_up else []
            for entry in idle:
                self._idle.remove(entry)
        level = logging.WARNING if newly else logging.DEBUG
        logger.log(level, "pool %r: host %s marked down for %.1f s: %s", self.name, host.label, host.backoff, reason)
        for entry in idle:
            self._discard(entry, stats.CLOSES_HOST_DOWN)

    def _suspect(self, host: Host, exc: BaseException) -> bool:
        """An error on an open connection to *host*: if it is a host error, probe the host at once.

        :returns: whether *exc* is a host error (the connection is then not kept).
        """
        reason = self._host_error(exc)
        hosts = self._hosts
        if reason is None or hosts is None:
            return False
        with self._lock:
            asked = hosts.suspect(host)
        if asked:
            logger.info("pool %r: probing host %s after an error on a connection: %s", self.name, host.label, reason)
        return True

    def connection_failed(self, conn: C, exc: BaseException) -> bool:
        """A statement on *conn* (checked out) failed with *exc*: if the error may be its host's,
        have the host probed (``hosts.py``: it goes down if the probe fails).

        :returns: whether it may (the caller then returns *conn* as broken);
            always ``False`` with one server.
        """
        entry = self._in_use.get(id(conn))
        if entry is None or entry.host is None:
            return False
        return self._suspect(entry.host, exc)

    def host_of(self, conn: C) -> str | None:
        """The ``"host:port"`` *conn* (checked out) is connected to; ``None`` with one server."""
        entry = self._in_use.get(id(conn))
        return None if entry is None or entry.host is None else entry.host.label

    def _entry_failed(self, entry: Entry[C], exc: BaseException) -> None:
        if entry.host is not None:
            self._suspect(entry.host, exc)

    def _retire_locked(self, host: Host) -> bool:
        return self._hosts is not None and self._hosts.retire(host)

    # -- probes -------------------------------------------------------------

    def probe_hosts(self) -> None:
        """Probe the down hosts whose backoff ended and the suspected ones: one connect each
        (with ``connect_host``'s checks; the prober thread).

        A probe that succeeds marks the host up; its connection joins the
        pool (a waiter gets it, or it is kept idle) when there is room, else
        it is closed (a probe may open one connection beyond ``max_size``
        for that moment, on the probed host). A probe that fails marks the
        host down (again, with a longer backoff) and closes its idle connections.
        """
        hosts, connect_host = self._hosts, self._connect_host
        if hosts is None or connect_host is None:
            return
        with self._lock:
            due = [] if self._closed else hosts.due_probes(self._clock())
        for host in due:
            suspected = host.state == UP
            if suspected and self._nconns >= self.max_size:
                with self._lock:
                    hosts.suspect(host)  # probed when the pool has room: never beyond max_size for an up host
                continue
            try:
                conn = connect_host(host.label, min(self.timeout, PROBE_TIMEOUT))  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - logged; the host's state follows
                logger.info("pool %r: probe of host %s failed: %s", self.name, host.label, exc)
                reason = self._host_error(exc)
                if reason is not None or not suspected:  # an up host goes down for the host's errors only
                    self._mark_down(host, reason or repr(exc)[:200], connecting=True)
                continue
            self._probe_succeeded(host, conn)

    def _probe_succeeded(self, host: Host, conn: C) -> None:
        hosts = self._hosts
        assert hosts is not None  # noqa: S101 - only probes of a pool with hosts succeed
        now = self._clock()
        with self._lock:
            revived = hosts.mark_up(host)
            stale = self._take_idle_of_down_hosts_locked() if revived else []
            self._stats[stats.CONNECTIONS_NUM] += 1
            keep = not self._closed and self._nconns < self.max_size
            if keep:
                self._nconns += 1
                host.open += 1
                entry: Entry[C] = Entry(conn, now, self.max_lifetime)
                entry.host = host
                if not self._keep_locked(entry, now):
                    keep = False
                    host.open -= 1
                    self._nconns -= 1
        if revived:
            logger.info("pool %r: host %s is up again (probe)", self.name, host.label)
            self._close_stale(stale)
        if not keep:
            self._safe_close(conn)

    def _take_idle_of_down_hosts_locked(self) -> list[Entry[C]]:
        """A host is up again: take the idle connections kept on hosts that are down (kept while no
        host was up, ``_mark_down``) out of the idle list, in the same lock hold as ``mark_up``, so
        that no checkout gets one; the caller closes them (:meth:`_close_stale`)."""
        stale = [entry for entry in self._idle if entry.host is not None and entry.host.state != UP]
        for entry in stale:
            self._idle.remove(entry)
        return stale

    def _close_stale(self, stale: list[Entry[C]]) -> None:
        for entry in stale:
            self._discard(entry, stats.CLOSES_HOST_DOWN)

    def _host_stats_locked(self) -> dict[str, dict[str, object]]:
        hosts = self._hosts
        if hosts is None:
            return {}
        now = self._clock()
        idle: dict[Host, int] = {}
        for entry in self._idle:
            if entry.host is not None:
                idle[entry.host] = idle.get(entry.host, 0) + 1
        busy: dict[Host, int] = {}
        for entry in self._in_use.values():
            if entry.host is not None:
                busy[entry.host] = busy.get(entry.host, 0) + 1
        result: dict[str, dict[str, object]] = {}
        for host in hosts.hosts:
            state, retry_in = hosts.state_of(host, now)
            result[host.label] = {
                "state": state,
                "reason": host.reason,
                stats.HOST_UP: int(state == UP),
                stats.HOST_RETRY_IN_MS: int(retry_in * 1000),
                stats.POOL_SIZE: host.open,
                stats.POOL_AVAILABLE: idle.get(host, 0),
                stats.CONNECTIONS_IN_USE: busy.get(host, 0),
                stats.CONNECTIONS_ERRORS: host.connections_errors,
                stats.HOST_MARKED_DOWN: host.marked_down,
                stats.FAILOVERS: host.failovers,
            }
        return result

    def get_host_stats(self) -> dict[str, dict[str, object]]:
        """Each host's state and sizes, by ``"host:port"`` (empty with one server).

        Each value holds ``state`` (``"up"``, ``"down"`` or ``"probing"``),
        ``reason`` (why it was marked down, ``""`` while up) and the integer
        keys of :data:`~django_mysql_pooled.pool.stats.HOST_STATS`.
        """
        with self._lock:
            return self._host_stats_locked()


def probe_round(pool: Any) -> None:
    """The prober thread's work (``tasks.start``): :meth:`HostedPoolState.probe_hosts`."""
    pool.probe_hosts()
