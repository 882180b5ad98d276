"""``manage.py poolstats`` over real processes with pools."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections
from prometheus_client.parser import text_string_to_metric_families

from django_mysql_pooled.management.commands import poolstats

ROOT = Path(__file__).resolve().parents[2]

# Checks out argv[1] connections of the default pool, then waits for stdin to close.
WORKER = """
import os, sys, django
django.setup()
from django.db import connection
connection.settings_dict["NAME"] = os.environ["DMP_WORKER_DB"]
held = [connection.pool.getconn() for _ in range(int(sys.argv[1]))]
print("ready", flush=True)
sys.stdin.read()
for conn in held:
    connection.pool.putconn(conn)
"""


pytestmark = pytest.mark.usefixtures("stats_path")  # tests/monitoring/conftest.py


@pytest.fixture
def spawn(transactional_db: None, stats_path: Path) -> Iterator[Any]:
    """Start worker processes holding connections; all stopped afterwards."""
    procs: list[subprocess.Popen[str]] = []
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DJANGO_MYSQL_POOLED_STATS_DIR": str(stats_path),
        "DMP_WORKER_DB": connections["default"].settings_dict["NAME"],
    }

    def start(held: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(held)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("poolstats", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def report() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(run("--json", "--database", "default")[0])
    return result


def in_use_by_pid() -> dict[int, int]:
    processes = report()["databases"]["default"]["processes"]
    return {p["pid"]: p["stats"]["connections_in_use"] for p in processes}


def wait_for_in_use(expected: dict[int, int], timeout: float = 15.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        seen = in_use_by_pid()
        if {pid: seen.get(pid) for pid in expected} == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


def test_two_processes_then_one(spawn: Any) -> None:
    one, two = spawn(1), spawn(2)
    seen = wait_for_in_use({one.pid: 1, two.pid: 2})
    assert {one.pid: 1, two.pid: 2}.items() <= seen.items()
    data = report()["databases"]["default"]
    assert data["total"]["processes"] >= 2
    assert data["total"]["connections_in_use"] >= 3
    assert data["server"]["max_connections"] > 0
    assert data["server"]["user_connections"] >= 3

    one.send_signal(signal.SIGKILL)
    one.wait(10)
    seen = in_use_by_pid()
    assert one.pid not in seen
    assert seen[two.pid] == 2

    assert two.stdin is not None
    two.stdin.close()  # a clean exit removes its snapshot
    two.wait(10)
    assert two.returncode == 0
    assert not list(Path(report()["stats_dir"]).glob(f"{two.pid}-*.json"))


def test_table_shows_a_row_per_process_and_a_total(spawn: Any) -> None:
    proc = spawn(1)
    wait_for_in_use({proc.pid: 1})
    out, err = run("--database", "default")
    assert err == ""
    row = next(line.split() for line in out.splitlines() if line.split()[:1] == [str(proc.pid)])
    assert row[1] == socket.gethostname()
    assert row[2:5] == ["1", "1", "0"]  # size, in use, idle
    assert "TOTAL (" in out
    assert "Server: max_connections=" in out
    assert "Threads_connected=" in out


def test_no_live_process_still_shows_the_server(stats_path: Path, transactional_db: None) -> None:
    connections["default"].close()
    connections["default"].close_pool()  # type: ignore[attr-defined]  # this process publishes nothing
    out, _err = run("--database", "default")
    assert "No live process has a pool for database 'default'." in out
    assert "Server: max_connections=" in out
    assert "TOTAL" not in out


def test_prometheus_output_parses(spawn: Any) -> None:
    proc = spawn(2)
    wait_for_in_use({proc.pid: 2})
    out, _err = run("--prometheus")
    families = {f.name: f for f in text_string_to_metric_families(out)}
    samples = families["django_mysql_pooled_connections_in_use"].samples
    assert {"alias": "default", "host": socket.gethostname(), "pid": str(proc.pid)} in [s.labels for s in samples]
    assert [s.value for s in samples if s.labels["pid"] == str(proc.pid)] == [2]
    assert families["django_mysql_pooled_requests_num"].type == "counter"


def test_bad_files_are_skipped_with_a_warning(stats_path: Path, transactional_db: None) -> None:
    stats_path.mkdir(mode=0o700)
    (stats_path / "1-default.json").write_text("{corrupt")
    os.chmod(stats_path / "1-default.json", 0o600)
    (stats_path / "2-default.json").symlink_to("/etc/passwd")
    out, err = run("--json")
    assert "malformed snapshot" in err
    assert "symlink" in err
    assert json.loads(out)["skipped"] == [line.removeprefix("Warning: ") for line in err.splitlines()]


def test_the_combined_max_size_is_compared_with_max_connections() -> None:
    server = {"max_connections": 10, "max_user_connections": 5}
    warnings = poolstats.limit_warnings("default", 12, server)
    assert "combined max_size (12) can exceed the server's max_connections (10)" in warnings[0]
    assert "max_user_connections (5)" in warnings[1]
    assert poolstats.limit_warnings("default", 4, server) == []


def test_watch_prints_until_interrupted(monkeypatch: pytest.MonkeyPatch, transactional_db: None) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("time.sleep", sleep)
    out, _err = run("--watch", "0.5", "--database", "default")
    assert out.count("Pool statistics at") == 2
    assert sleeps == [0.5, 0.5]


def test_bad_arguments_raise_command_errors() -> None:
    with pytest.raises(CommandError, match="--watch must be a number of seconds > 0, got 0.0"):
        run("--watch", "0")
    with pytest.raises(CommandError, match="invalid choice: 'nope'"):
        run("--database", "nope")
