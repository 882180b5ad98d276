"""Prometheus collectors for the pools' statistics (needs the ``prometheus`` extra).

In a process with pools::

    from prometheus_client import REGISTRY
    from django_mysql_pooled.monitoring.prometheus import PoolCollector

    REGISTRY.register(PoolCollector())

Every stat becomes ``django_mysql_pooled_<key>`` with an ``alias`` label: the
sizes are gauges, everything else a counter (``_total``). The collector reads
``get_stats()``, never ``pop_stats()``; a ``pop_stats()`` elsewhere looks like
a counter reset to Prometheus. :class:`SnapshotCollector` exposes the
published snapshots of every live process (``alias``, ``host`` and ``pid``
labels); ``manage.py poolstats --prometheus`` prints it.

A pool with several servers adds each server's statistics (``get_host_stats()``,
:data:`~django_mysql_pooled.pool.stats.HOST_STATS`) as ``django_mysql_pooled_host_<key>``
(``host_up`` is ``django_mysql_pooled_host_up``) with the labels ``alias`` and
``host`` (``"host:port"``), and ``django_mysql_pooled_host_state`` (1 for the
server's state, 0 for the others, in a ``state`` label). In the snapshots'
collector, whose ``host`` label is the machine's, the server is in ``server``.
A pool with one server has none of these series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from django_mysql_pooled.pool import registry, stats
from django_mysql_pooled.pool.hosts import DOWN, PROBING, UP

__all__ = ["HOST_PREFIX", "PREFIX", "PoolCollector", "SnapshotCollector"]

PREFIX = "django_mysql_pooled_"
#: The per-server metrics' prefix: ``django_mysql_pooled_host_<key>``.
HOST_PREFIX = PREFIX + "host_"

Row = tuple[Sequence[str], Mapping[str, int]]
#: Label values and one server's ``get_host_stats()`` entry (``state``, ``reason``, integers).
HostRow = tuple[Sequence[str], Mapping[str, object]]


def _families(label_names: Sequence[str], rows: Iterable[Row]) -> Iterator[Metric]:
    """One metric family per stat key, one sample per row (label values, stats)."""
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for labels, values in rows:
        for key in sorted(values):
            family = families.get(key)
            if family is None:
                family = families[key] = _family(key, label_names)
            family.add_metric(list(labels), values[key])
    yield from families.values()


def _family(key: str, label_names: Sequence[str]) -> GaugeMetricFamily | CounterMetricFamily:
    stat = stats.BY_NAME.get(key)
    if stat is None:  # a key of a newer version, read from a snapshot
        return CounterMetricFamily(PREFIX + key, f"Connection pool statistic {key}", labels=list(label_names))
    kind = GaugeMetricFamily if stat.kind == "gauge" else CounterMetricFamily
    return kind(PREFIX + key, f"{stat.help} Unit: {stat.unit}.", labels=list(label_names))


def _host_families(label_names: Sequence[str], rows: Iterable[HostRow]) -> Iterator[Metric]:
    """The per-server families (:data:`~django_mysql_pooled.pool.stats.HOST_STATS` and the state);
    none without rows."""
    rows = list(rows)
    if not rows:
        return
    for stat in stats.HOST_STATS:
        kind = GaugeMetricFamily if stat.kind == "gauge" else CounterMetricFamily
        name = HOST_PREFIX + stat.name.removeprefix("host_")
        family = kind(name, f"{stat.help} Unit: {stat.unit}.", labels=list(label_names))
        for labels, values in rows:
            value = values.get(stat.name)
            if isinstance(value, int):
                family.add_metric(list(labels), value)
        yield family
    state = GaugeMetricFamily(
        HOST_PREFIX + "state",
        "1 for the host's state (up, down: waiting for its probe, probing), 0 for the others. Unit: hosts.",
        labels=[*label_names, "state"],
    )
    for labels, values in rows:
        for name in (UP, DOWN, PROBING):
            state.add_metric([*labels, name], int(values.get("state") == name))
    yield state


class PoolCollector(Collector):
    """The stats of each pool in this process, labelled with its ``alias``."""

    def __init__(self, pools: Callable[[], Mapping[str, Any]] = registry.all_pools) -> None:
        self._pools = pools

    def collect(self) -> Iterator[Metric]:
        pools = [(alias, pool) for alias, pool in sorted(self._pools().items()) if not pool.closed]
        yield from _families(("alias",), [((alias,), pool.get_stats()) for alias, pool in pools])
        hosts = [
            ((alias, host), values)
            for alias, pool in pools
            for host, values in getattr(pool, "get_host_stats", dict)().items()
        ]
        yield from _host_families(("alias", "host"), hosts)


class SnapshotCollector(Collector):
    """The stats of published snapshots (see :mod:`django_mysql_pooled.monitoring.snapshots`)."""

    def __init__(self, snapshots: Iterable[Mapping[str, Any]]) -> None:
        self._snapshots = list(snapshots)

    def collect(self) -> Iterator[Metric]:
        rows = [((s["alias"], s["host"], str(s["pid"])), s["stats"]) for s in self._snapshots]
        yield from _families(("alias", "host", "pid"), rows)
        hosts = [
            ((s["alias"], s["host"], str(s["pid"]), entry["host"]), entry)
            for s in self._snapshots
            for entry in s.get("hosts", ())
        ]
        yield from _host_families(("alias", "host", "pid", "server"), hosts)
