"""Pool statistics through Django, their publication as snapshots, and reading them back."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from django_mysql_pooled.errors import PoolTimeout
from django_mysql_pooled.monitoring import publisher as stats
from django_mysql_pooled.monitoring.prometheus import PoolCollector
from django_mysql_pooled.monitoring.publisher import Publisher, publisher_for, stats_dir
from django_mysql_pooled.monitoring.snapshots import read_snapshots
from tests.conftest import WrapperFactory

pytestmark = pytest.mark.usefixtures("stats_path")  # tests/monitoring/conftest.py


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def publisher_of(pool: Any) -> Publisher:
    return next(hook for hook in pool.hooks if isinstance(hook, Publisher))


def connection_id(wrapper: Any) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])


# -- counting -------------------------------------------------------------------


def test_checkouts_resets_and_returns_are_counted(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 2})
    pool: Any = db.pool  # type: ignore[attr-defined]
    db.ensure_connection()
    first = pool.get_stats()
    assert first["requests_num"] == 1
    assert first["connections_num"] == 1
    assert (first["pool_size"], first["connections_in_use"], first["pool_available"]) == (1, 1, 0)
    db.close()
    db.ensure_connection()  # the same connection, reset
    second = pool.get_stats()
    assert second["requests_num"] == 2
    assert second["connections_num"] == 1
    assert second["resets_num"] == 1
    assert second["resets_reset_connection"] + second["resets_change_user"] == 1
    db.close()
    after = pool.get_stats()
    assert (after["connections_in_use"], after["pool_available"], after["pool_max"]) == (0, 1, 2)


def test_waits_and_timeouts_are_counted(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 1, "timeout": 0.2})
    pool: Any = db.pool  # type: ignore[attr-defined]
    held = pool.getconn()
    with pytest.raises(PoolTimeout, match=repr(db.alias)):
        pool.getconn()
    timed_out = pool.get_stats()
    assert (timed_out["requests_queued"], timed_out["requests_timeouts"], timed_out["requests_errors"]) == (1, 1, 1)

    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(pool.getconn(5.0)))
    waiter.start()
    wait_for(lambda: pool.get_stats()["requests_waiting"] == 1)
    time.sleep(0.05)
    assert pool.get_stats()["requests_longest_wait_ms"] >= 40
    pool.putconn(held)  # handed over to the waiter
    waiter.join(5)
    waited = pool.get_stats()
    assert waited["requests_queued"] == 2
    assert waited["requests_waiting"] == 0
    assert waited["requests_wait_ms"] >= 40
    assert waited["connections_in_use"] == 1
    pool.putconn(got[0])


def test_a_connection_killed_on_the_server_is_counted_lost(pooled: WrapperFactory, admin: Any) -> None:
    db = pooled({"max_size": 2})
    pool: Any = db.pool  # type: ignore[attr-defined]
    victim = connection_id(db)
    db.close()
    admin.cursor().execute(f"KILL {victim}")
    assert connection_id(db) != victim
    db.close()
    counted = pool.get_stats()
    # Reset at checkin, found dead by the checkout's validation.
    assert (counted["checks_failed"], counted["connections_lost"], counted["closes_broken"]) == (1, 1, 1)
    assert counted["connections_num"] == 2
    assert counted["pool_size"] == 1


def test_pop_stats_resets_counters_but_not_sizes(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 3})
    pool: Any = db.pool  # type: ignore[attr-defined]
    db.ensure_connection()
    db.close()
    popped = pool.pop_stats()
    assert popped["requests_num"] == 1
    assert popped["connections_num"] == 1
    after = pool.get_stats()
    assert after["requests_num"] == 0
    assert after["connections_num"] == 0
    assert (after["pool_size"], after["pool_available"], after["pool_max"]) == (1, 1, 3)
    assert set(after) == set(popped)


def test_a_leaked_checkout_is_reported_once_with_its_stack(
    pooled: WrapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    db = pooled({"leak_timeout": 0.2})
    pool: Any = db.pool  # type: ignore[attr-defined]
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        db.ensure_connection()
        wait_for(lambda: pool.get_stats()["leaks_detected"] == 1)
        time.sleep(0.5)  # several more maintenance rounds
    leaks = [r for r in caplog.records if "leak_timeout" in r.getMessage()]
    assert len(leaks) == 1
    message = leaks[0].getMessage()
    assert repr(db.alias) in message
    assert "test_a_leaked_checkout_is_reported_once_with_its_stack" in message
    assert pool.get_stats()["leaks_detected"] == 1
    db.close()


# -- publication ------------------------------------------------------------------


def test_the_stats_dir_comes_from_the_setting_then_the_environment(
    settings: Any, monkeypatch: pytest.MonkeyPatch, stats_path: Path
) -> None:
    assert stats_dir() == stats_path
    del settings.DJANGO_MYSQL_POOLED_STATS_DIR
    monkeypatch.setenv(stats.SETTING, "/somewhere/else")
    assert stats_dir() == Path("/somewhere/else")
    monkeypatch.delenv(stats.SETTING)
    assert stats_dir().name == f"django_mysql_pooled-{os.getuid()}"


def test_an_open_pool_publishes_a_private_snapshot_and_removes_it_at_close(
    pooled: WrapperFactory, stats_path: Path
) -> None:
    db = pooled({"max_size": 3})
    pool: Any = db.pool  # type: ignore[attr-defined]
    db.ensure_connection()
    publisher_of(pool)(pool)
    path = stats_path / f"{os.getpid()}-{db.alias}.json"
    wait_for(lambda: path.exists() and json.loads(path.read_text())["stats"]["connections_in_use"] == 1)
    assert stat.S_IMODE(os.stat(stats_path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["pid"] == os.getpid()
    assert data["alias"] == db.alias
    assert data["options"]["max_size"] == 3
    assert set(data["server"]) == {"host", "port", "database", "user"}
    assert not [name for name in os.listdir(stats_path) if name.startswith(".tmp-")]
    db.close()
    db.close_pool()  # type: ignore[attr-defined]
    assert not path.exists()


def test_the_password_is_never_published(pooled: WrapperFactory, admin: Any, stats_path: Path) -> None:
    password = "s3cret-Passw0rd-for-stats"
    cursor = admin.cursor()
    database = pooled().settings_dict["NAME"]
    for host in ("%", "localhost"):
        cursor.execute(f"CREATE USER IF NOT EXISTS 'dmp_stats'@'{host}' IDENTIFIED BY '{password}'")
        cursor.execute(f"GRANT ALL ON `{database}`.* TO 'dmp_stats'@'{host}'")
    try:
        db = pooled(USER="dmp_stats", PASSWORD=password)
        pool: Any = db.pool  # type: ignore[attr-defined]
        db.ensure_connection()
        publisher_of(pool)(pool)
        text = (stats_path / f"{os.getpid()}-{db.alias}.json").read_text()
        assert "dmp_stats" in text
        assert password not in text
        assert "PASSWORD" not in text.upper()
        db.close()
    finally:
        for host in ("%", "localhost"):
            cursor.execute(f"DROP USER IF EXISTS 'dmp_stats'@'{host}'")


def test_publication_is_throttled_and_skipped_when_nothing_changed(stats_path: Path) -> None:
    publisher = Publisher("throttled", {"host": "db"}, {"max_size": 1})
    assert publisher.publish({"requests_num": 1}, now=100.0)
    assert not publisher.publish({"requests_num": 2}, now=100.5)  # within a second
    assert publisher.publish({"requests_num": 2}, now=101.0)
    assert not publisher.publish({"requests_num": 2}, now=103.0)  # unchanged
    assert publisher.publish({"requests_num": 2}, now=101.0 + stats.HEARTBEAT)  # heartbeat
    publisher.remove()
    assert not publisher.publish({"requests_num": 3}, now=200.0)  # closed: never again
    assert os.listdir(stats_path) == []


def test_a_directory_of_another_user_is_refused(stats_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stats_path.mkdir(mode=0o700)
    os.chown(stats_path, 65534, 65534)
    publisher = Publisher("refused", {}, {})
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        assert not publisher.publish({"requests_num": 1}, now=1.0)
        assert not publisher.publish({"requests_num": 2}, now=5.0)
    assert len([r for r in caplog.records if "cannot publish" in r.getMessage()]) == 1
    assert os.listdir(stats_path) == []


def test_a_loose_directory_of_ours_is_refused_never_chmodded(
    stats_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stats_path.mkdir(mode=0o755)
    os.chmod(stats_path, 0o755)
    publisher = Publisher("loose", {}, {})
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        assert not publisher.publish({"requests_num": 1}, now=1.0)
        assert not publisher.publish({"requests_num": 2}, now=5.0)
    assert stat.S_IMODE(os.stat(stats_path).st_mode) == 0o755
    assert os.listdir(stats_path) == []
    [warning] = [r.getMessage() for r in caplog.records if "cannot publish" in r.getMessage()]  # logged once
    assert "has mode 0755, expected 0700; make it private (chmod 700" in warning
    os.chmod(stats_path, 0o700)  # the owner fixes it: publishing resumes
    assert publisher.publish({"requests_num": 3}, now=10.0)
    publisher.remove()


def test_publisher_for_keeps_server_fields_only() -> None:
    class Config:
        def as_dict(self) -> dict[str, Any]:
            return {"max_size": 2}

    settings_dict = {"HOST": "db", "PORT": 3307, "NAME": "app", "USER": "u", "PASSWORD": "pw"}
    publisher = publisher_for("x", settings_dict, Config())
    assert publisher.server == {"host": "db", "port": "3307", "database": "app", "user": "u"}
    assert publisher.options == {"max_size": 2}


# -- reading --------------------------------------------------------------------


def snapshot(pid: int, **overrides: Any) -> dict[str, Any]:
    data = {
        "pid": pid,
        "host": socket.gethostname(),
        "alias": "default",
        "server": {},
        "options": {},
        "stats": {"pool_max": 2},
        "timestamp": time.time(),
    }
    data.update(overrides)
    return data


def put(directory: Path, name: str, content: str, mode: int = 0o600) -> Path:
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / name
    path.write_text(content)
    os.chmod(path, mode)
    return path


def test_read_snapshots_skips_what_it_cannot_trust(stats_path: Path, tmp_path: Path) -> None:
    good = put(stats_path, "good.json", json.dumps(snapshot(os.getpid())))
    put(stats_path, "corrupt.json", "{not json")
    put(stats_path, "wrong-shape.json", json.dumps(snapshot(os.getpid(), stats={"x": "1"})))
    put(stats_path, "loose.json", json.dumps(snapshot(os.getpid())), mode=0o644)
    foreign = put(stats_path, "foreign.json", json.dumps(snapshot(os.getpid())))
    os.chown(foreign, 65534, 65534)
    target = put(tmp_path, "target.json", json.dumps(snapshot(os.getpid())))
    (stats_path / "link.json").symlink_to(target)
    put(stats_path, ".tmp-partial.json", "{")
    result = read_snapshots()
    assert [s["pid"] for s in result.snapshots] == [os.getpid()]
    for name, why in [
        ("corrupt.json", "malformed"),
        ("wrong-shape.json", "malformed"),
        ("loose.json", "mode 0644"),
        ("foreign.json", "owned by uid 65534"),
        ("link.json", "symlink"),
    ]:
        assert any(line.startswith(f"skipped {stats_path / name}: ") and why in line for line in result.warnings)
    assert len(result.warnings) == 5
    assert good.exists() and foreign.exists() and target.exists()


def test_read_snapshots_removes_dead_and_stale_ones(stats_path: Path) -> None:
    dead_pid = 2**22 + 12345  # above the default pid_max
    dead = put(stats_path, "dead.json", json.dumps(snapshot(dead_pid)))
    stale = put(stats_path, "stale.json", json.dumps(snapshot(os.getpid(), timestamp=time.time() - 3600)))
    elsewhere = put(stats_path, "elsewhere.json", json.dumps(snapshot(dead_pid, host="another-machine")))
    result = read_snapshots()
    assert [s["host"] for s in result.snapshots] == ["another-machine"]
    assert not dead.exists() and not stale.exists() and elsewhere.exists()
    assert result.warnings == []
    assert any("is not running" in line for line in result.removed)
    assert any("not updated for" in line for line in result.removed)


def test_read_snapshots_ignores_a_foreign_directory(stats_path: Path) -> None:
    assert read_snapshots().snapshots == []  # missing: nothing, no warning
    put(stats_path, "good.json", json.dumps(snapshot(os.getpid())))
    os.chown(stats_path, 65534, 65534)
    result = read_snapshots()
    assert result.snapshots == []
    assert "owned by uid 65534" in result.warnings[0]


# -- Prometheus -------------------------------------------------------------------


def test_the_collector_exposes_each_pool_of_this_process(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 3})
    db.ensure_connection()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector())
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    in_use = {s.labels["alias"]: s.value for s in families["django_mysql_pooled_connections_in_use"].samples}
    assert in_use[db.alias] == 1
    assert families["django_mysql_pooled_pool_max"].type == "gauge"
    assert families["django_mysql_pooled_requests_num"].type == "counter"
    db.close()


def test_help_lines_say_what_each_metric_means_and_its_unit(pooled: WrapperFactory) -> None:
    db = pooled({"max_size": 3})
    db.ensure_connection()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector())
    text = generate_latest(registry).decode()
    db.close()
    expected = [
        "# HELP django_mysql_pooled_pool_size Open connections plus slots reserved by checkouts opening one. "
        "Unit: connections.",
        "# HELP django_mysql_pooled_requests_wait_ms_total Time checkouts spent waiting in the queue. "
        "Unit: milliseconds.",
        "# HELP django_mysql_pooled_connections_errors_total Attempts to open a connection that failed. "
        "Unit: connections.",
        "# HELP django_mysql_pooled_connections_in_use Connections checked out now. Unit: connections.",
    ]
    lines = set(text.splitlines())
    assert [line for line in expected if line not in lines] == []
    helps = [line for line in text.splitlines() if line.startswith("# HELP ")]
    assert helps and not [line for line in helps if "statistic" in line or " Unit: " not in line]
