"""Render ``preview.png``: the dashboard's panels drawn with matplotlib from a real pool's metrics.

Grafana itself cannot be installed on the machines this project is built on
(it is in none of the package registries they reach), so the docs show this
preview instead of a screenshot, and say so. It is faithful in what matters:
the panels, their titles, layout, units and queries are read from
``django_mysql_pooled.json``; the values are what :class:`PoolCollector`
exposed, sampled every 0.5 s, while this script drove a pool on a real server
through four phases (light load, exhaustion with timeouts, kills and lost
connections, idle). ``rate()`` is computed over 2 s.

    python docs/grafana/preview.py   # a MySQL/MariaDB server: DMP_PREVIEW_HOST/PORT/USER/PASSWORD
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import django
from django.conf import settings

HERE = Path(__file__).resolve().parent
SAMPLE_EVERY, RATE_WINDOW = 0.5, 2.0
COLOURS = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C"]


def configure() -> None:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django_mysql_pooled",
                "NAME": "information_schema",
                "HOST": os.environ.get("DMP_PREVIEW_HOST", "127.0.0.1"),
                "PORT": os.environ.get("DMP_PREVIEW_PORT", "3306"),
                "USER": os.environ.get("DMP_PREVIEW_USER", "root"),
                "PASSWORD": os.environ.get("DMP_PREVIEW_PASSWORD", ""),
                "CONN_MAX_AGE": 0,
                "OPTIONS": {"pool": {"max_size": 6, "timeout": 0.3, "max_idle": 2.0}},
            }
        },
        INSTALLED_APPS=["django_mysql_pooled"],
        DJANGO_MYSQL_POOLED_STATS_DIR=tempfile.mkdtemp(prefix="dmp-preview-stats-"),
    )
    django.setup()


#: Server ids of the pool's own connections: only these are ever killed (the server may be shared).
OURS: set[int] = set()


def drive(slot: int, phase: dict[str, Any], stop: threading.Event) -> None:
    from django.db import OperationalError, connection

    from django_mysql_pooled import QueryCancelled
    from django_mysql_pooled.cancel.scope import cancel_scope

    while not stop.is_set():
        if phase["threads"] <= slot:
            time.sleep(0.05)
            continue
        try:
            if phase.get("cancel") and slot == 0:
                with cancel_scope(connection, timeout=0.05), connection.cursor() as cursor:
                    cursor.execute("SELECT SLEEP(1)")
            else:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT CONNECTION_ID(), SLEEP(%s)", [phase["sleep"]])
                    OURS.add(int(cursor.fetchone()[0]))
        except (OperationalError, QueryCancelled):
            pass
        finally:
            connection.close()
        time.sleep(phase["pause"])


def sample(series: list[tuple[float, dict[str, float]]], started: float) -> None:
    from django_mysql_pooled.monitoring.prometheus import PoolCollector

    values = {s.name: s.value for family in PoolCollector().collect() for s in family.samples}
    series.append((time.monotonic() - started, values))


def run() -> list[tuple[float, dict[str, float]]]:  # long: the scenario, phase by phase
    import MySQLdb
    from django.db import connections

    configure()
    phase: dict[str, Any] = {"threads": 3, "sleep": 0.01, "pause": 0.01}
    stop = threading.Event()
    threads = [threading.Thread(target=drive, args=(i, phase, stop), daemon=True) for i in range(14)]
    for thread in threads:
        thread.start()
    series: list[tuple[float, dict[str, float]]] = []
    started = time.monotonic()
    script = [
        (6.0, {"threads": 14, "sleep": 0.12, "pause": 0.0}),  # exhaustion: queueing, timeouts
        (12.0, {"threads": 4, "sleep": 0.01, "pause": 0.05, "cancel": True}),  # cancellations, kills
        (18.0, {"threads": 1, "sleep": 0.005, "pause": 0.2, "cancel": False}),  # quiet: idle closes
    ]
    params = connections["default"].get_connection_params()
    admin = MySQLdb.connect(**{k: v for k, v in params.items() if k != "pool"})
    done = set()
    while (now := time.monotonic() - started) < 24.0:
        for at, change in script:
            if now >= at and at not in done:
                phase.update(change)
                done.add(at)
        if now >= 13.0 and "killed" not in done:  # two of the pool's idle connections die under it
            cursor = admin.cursor()
            cursor.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE COMMAND = 'Sleep'")
            for conn_id in [row[0] for row in cursor.fetchall() if int(row[0]) in OURS][:2]:
                with contextlib.suppress(MySQLdb.Error):
                    cursor.execute(f"KILL CONNECTION {int(conn_id)}")
            done.add("killed")
        pool: Any = connections["default"].pool
        pool.restorer.use_reset_connection = not 15.0 <= now < 17.0  # the change_user rung for 2 s
        sample(series, started)
        time.sleep(SAMPLE_EVERY)
    stop.set()
    for thread in threads:
        thread.join(5)
    admin.close()
    connections["default"].close_pool()
    return series


def evaluate(expr: str, series: list[tuple[float, dict[str, float]]]) -> list[float]:
    if " / " in expr:
        top, bottom = (evaluate(part, series) for part in expr.split(" / "))
        return [t / b if b else math.nan for t, b in zip(top, bottom, strict=True)]
    name = re.search(r"(django_mysql_pooled_\w+)\{", expr)
    assert name is not None, expr
    key = name.group(1)
    raw = [values.get(key, 0.0) for _, values in series]
    if not expr.startswith("sum by (alias) (rate("):
        return raw
    out = []
    for i, (t, _) in enumerate(series):
        j = next((k for k in range(i, -1, -1) if t - series[k][0] >= RATE_WINDOW), 0)
        out.append((raw[i] - raw[j]) / (t - series[j][0]) if t > series[j][0] else math.nan)
    return out


def render(series: list[tuple[float, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dashboard = json.loads((HERE / "django_mysql_pooled.json").read_text())
    panels = dashboard["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels) // 8
    plt.rcParams.update({"text.color": "#ccccdc", "axes.labelcolor": "#ccccdc", "font.size": 9})
    fig, axes = plt.subplots(rows, 2, figsize=(15, 3.2 * rows), facecolor="#111217")
    times = [t for t, _ in series]
    for spec in panels:
        ax = axes[spec["gridPos"]["y"] // 8][spec["gridPos"]["x"] // 12]
        ax.set_facecolor("#181b1f")
        ax.tick_params(colors="#9fa7b3")
        for side in ax.spines.values():
            side.set_color("#2c3235")
        ax.grid(color="#2c3235", linewidth=0.6)
        unit = spec["fieldConfig"]["defaults"]["unit"]
        for target, colour in zip(spec["targets"], COLOURS, strict=False):
            label = target["legendFormat"].replace("{{alias}}", "default")
            ax.plot(times, evaluate(target["expr"], series), color=colour, linewidth=1.4, label=label)
        ax.set_title(spec["title"], loc="left", fontsize=10, color="#ccccdc")
        ax.set_xlabel("seconds into the run" + ("" if unit in ("short", "") else f"   (unit: {unit})"), fontsize=8)
        ax.legend(loc="upper left", fontsize=7, facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#ccccdc")
        ax.set_ylim(bottom=0)
    fig.suptitle(
        "django-mysql-pooled dashboard: PREVIEW drawn with matplotlib from docs/grafana/django_mysql_pooled.json "
        "and a real pool's metrics (not a Grafana screenshot)",
        color="#ccccdc",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=80, facecolor=fig.get_facecolor())


if __name__ == "__main__":
    render(run(), HERE / "preview.png")
