"""The Grafana dashboard (``docs/grafana/django_mysql_pooled.json``) queries metrics that exist."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from django_mysql_pooled.monitoring.prometheus import PREFIX, PoolCollector
from django_mysql_pooled.pool import stats
from tests.conftest import WrapperFactory

GRAFANA = Path(__file__).resolve().parents[2] / "docs" / "grafana"
DASHBOARD = json.loads((GRAFANA / "django_mysql_pooled.json").read_text())
METRIC = re.compile(rf"\b{PREFIX}[a-z_]+")


def expressions() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel["targets"]]


def test_the_committed_json_is_what_the_builder_writes() -> None:
    spec = importlib.util.spec_from_file_location("build_dashboard", GRAFANA / "build_dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.dashboard() == DASHBOARD


def test_every_metric_is_a_stat_with_its_kinds_suffix() -> None:
    names = {name for expr in expressions() for name in METRIC.findall(expr)}
    expected = {PREFIX + s.name + ("_total" if s.kind == "counter" else "") for s in stats.STATS}
    assert names and names <= expected, sorted(names - expected)
    for expr in expressions():  # counters go through rate(), gauges do not
        for name in METRIC.findall(expr):
            assert (f"rate({name}" in expr) == name.endswith("_total"), expr


def test_the_metrics_are_what_a_pool_exposes(pooled: WrapperFactory) -> None:
    db: Any = pooled({"max_size": 2})
    db.ensure_connection()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector())
    exposed = set(re.findall(rf"^# TYPE ({PREFIX}[a-z_]+) (\w+)", generate_latest(registry).decode(), re.M))
    db.close()
    late = {PREFIX + s.name for s in stats.STATS if s.late}
    exposed_names = {
        name + ("_total" if kind == "counter" and not name.endswith("_total") else "") for name, kind in exposed
    }
    queried = {name for expr in expressions() for name in METRIC.findall(expr)}
    assert {n for n in queried if n.removesuffix("_total") not in late} <= exposed_names


def test_panels_explain_themselves_and_filter_by_alias() -> None:
    for panel in DASHBOARD["panels"]:
        assert panel["title"] and panel["description"].endswith((".", ")")), panel["title"]
        for target in panel["targets"]:
            assert 'alias=~"$alias"' in target["expr"] and "{{alias}}" in target["legendFormat"]
    assert [v["name"] for v in DASHBOARD["templating"]["list"]] == ["datasource", "alias"]
