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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from django_mysql_pooled.pool import registry, stats

__all__ = ["PREFIX", "PoolCollector", "SnapshotCollector"]

PREFIX = "django_mysql_pooled_"

Row = tuple[Sequence[str], Mapping[str, int]]


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


class PoolCollector(Collector):
    """The stats of each pool in this process, labelled with its ``alias``."""

    def __init__(self, pools: Callable[[], Mapping[str, Any]] = registry.all_pools) -> None:
        self._pools = pools

    def collect(self) -> Iterator[Metric]:
        rows = [((alias,), pool.get_stats()) for alias, pool in sorted(self._pools().items()) if not pool.closed]
        return _families(("alias",), rows)


class SnapshotCollector(Collector):
    """The stats of published snapshots (see :mod:`django_mysql_pooled.monitoring.snapshots`)."""

    def __init__(self, snapshots: Iterable[Mapping[str, Any]]) -> None:
        self._snapshots = list(snapshots)

    def collect(self) -> Iterator[Metric]:
        rows = [((s["alias"], s["host"], str(s["pid"])), s["stats"]) for s in self._snapshots]
        return _families(("alias", "host", "pid"), rows)
