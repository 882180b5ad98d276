"""Write ``django_mysql_pooled.json``, the Grafana dashboard of the Prometheus metrics.

Run ``python docs/grafana/build_dashboard.py`` after changing a panel; the
JSON is committed (import it in Grafana: Dashboards > New > Import). Every
metric it names is checked against ``pool/stats.py`` by
``tests/monitoring/test_grafana.py``. Each query sums by ``alias``, so the
same dashboard serves :class:`PoolCollector` scrapes (one series per process)
and ``manage.py poolstats --prometheus`` (``host`` and ``pid`` labels).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
P = "django_mysql_pooled_"
SEL = '{alias=~"$alias"}'


def gauge(key: str) -> str:
    return f"sum by (alias) ({P}{key}{SEL})"


def rate(key: str) -> str:
    return f"sum by (alias) (rate({P}{key}_total{SEL}[$__rate_interval]))"


#: (title, description, unit, [(expression, legend)]), two panels a row.
PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    (
        "Connections",
        "Open connections (pool_size), those checked out (connections_in_use), idle ones (pool_available), "
        "and the limit (pool_max).",
        "short",
        [
            (gauge("pool_size"), "{{alias}} open"),
            (gauge("connections_in_use"), "{{alias}} in use"),
            (gauge("pool_available"), "{{alias}} idle"),
            (gauge("pool_max"), "{{alias}} max_size"),
        ],
    ),
    (
        "Checkouts waiting",
        "Checkouts queued now for a connection, and how long the oldest has waited (right: milliseconds).",
        "short",
        [(gauge("requests_waiting"), "{{alias}} waiting"), (gauge("requests_longest_wait_ms"), "{{alias}} oldest ms")],
    ),
    (
        "Checkouts per second",
        "Checkouts served, and those that had to queue.",
        "reqps",
        [(rate("requests_num"), "{{alias}} served"), (rate("requests_queued"), "{{alias}} queued")],
    ),
    (
        "Mean wait per checkout",
        "Time spent in the queue per checkout served (milliseconds).",
        "ms",
        [(f"{rate('requests_wait_ms')} / {rate('requests_num')}", "{{alias}}")],
    ),
    (
        "Failed checkouts per second",
        "PoolTimeout (timeout passed), TooManyRequests (max_waiting reached), and every failed checkout "
        "(those two and failed connects).",
        "reqps",
        [
            (rate("requests_timeouts"), "{{alias}} timeouts"),
            (rate("requests_rejected"), "{{alias}} rejected"),
            (rate("requests_errors"), "{{alias}} all failures"),
        ],
    ),
    (
        "Connections opened and lost per second",
        "New connections, failed connects, and connections found dead (validation, reset).",
        "short",
        [
            (rate("connections_num"), "{{alias}} opened"),
            (rate("connections_errors"), "{{alias}} connect errors"),
            (rate("connections_lost"), "{{alias}} lost"),
        ],
    ),
    (
        "Resets per second, by method",
        "COM_RESET_CONNECTION, COM_CHANGE_USER, a new connection instead, and failed resets.",
        "short",
        [
            (rate("resets_reset_connection"), "{{alias}} reset_connection"),
            (rate("resets_change_user"), "{{alias}} change_user"),
            (rate("resets_reconnect"), "{{alias}} reconnect"),
            (rate("resets_failed"), "{{alias}} failed"),
        ],
    ),
    (
        "Connections closed per second, by reason",
        "Closed at the end of max_lifetime, after max_idle, or broken.",
        "short",
        [
            (rate("closes_lifetime"), "{{alias}} lifetime"),
            (rate("closes_idle"), "{{alias}} idle"),
            (rate("closes_broken"), "{{alias}} broken"),
        ],
    ),
    (
        "Leaks and rollbacks per second",
        "Checkouts held past leak_timeout, checkouts taken back from ended threads, transactions rolled back "
        "at checkin.",
        "short",
        [
            (rate("leaks_detected"), "{{alias}} leaks"),
            (rate("returns_reclaimed"), "{{alias}} reclaimed"),
            (rate("returns_rolled_back"), "{{alias}} rolled back"),
        ],
    ),
    (
        "Queries cancelled per second",
        "cancellable() calls that raised QueryCancelled, and KILL QUERY statements the server accepted.",
        "short",
        [(rate("queries_cancelled"), "{{alias}} cancelled"), (rate("kills_sent"), "{{alias}} KILL QUERY")],
    ),
]


def _overrides(targets: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Series in milliseconds beside a count go on a right-hand axis of their own."""
    return [
        {
            "matcher": {"id": "byFrameRefID", "options": chr(ord("A") + i)},
            "properties": [{"id": "unit", "value": "ms"}, {"id": "custom.axisPlacement", "value": "right"}],
        }
        for i, (expr, _legend) in enumerate(targets)
        if len(targets) > 1 and "_ms" in expr and "/" not in expr
    ]


def panel(number: int, title: str, description: str, unit: str, targets: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "id": number + 1,
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": 12 * (number % 2), "y": 8 * (number // 2)},
        "fieldConfig": {"defaults": {"unit": unit, "min": 0}, "overrides": _overrides(targets)},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def dashboard() -> dict[str, Any]:
    return {
        "title": "django-mysql-pooled",
        "uid": "django-mysql-pooled",
        "description": "Connection pools of django_mysql_pooled (Prometheus metrics django_mysql_pooled_*).",
        "tags": ["django", "mysql", "connection-pool"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "alias",
                    "label": "Database alias",
                    "type": "query",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": f"label_values({P}pool_max, alias)",
                    "refresh": 2,
                    "includeAll": True,
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "panels": [panel(i, *spec) for i, spec in enumerate(PANELS)],
    }


if __name__ == "__main__":
    (HERE / "django_mysql_pooled.json").write_text(json.dumps(dashboard(), indent=2) + "\n", encoding="utf-8")
