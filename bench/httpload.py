"""The HTTP workload's moving parts: gunicorn (gthread) serving ``bench.site`` and wrk."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WRK_SCRIPT = Path(__file__).with_name("wrk_items.lua")


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Gunicorn:
    """A gunicorn master (ours) serving one mode on 127.0.0.1."""

    def __init__(self, mode: str, env: dict[str, str], root: Path, log: Path, *, workers: int, threads: int) -> None:
        self.mode = mode
        self.connects_file = env["DMP_BENCH_CONNECTS_FILE"]
        self.port = free_port()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "bench.site.wsgi:application",
            "--worker-class=gthread",
            f"--workers={workers}",
            f"--threads={threads}",
            f"--bind=127.0.0.1:{self.port}",
            "--log-level=warning",
            "--timeout=60",
            "--graceful-timeout=5",
        ]
        self._log = log.open("ab")
        self._proc = subprocess.Popen(command, cwd=root, env=env, stdout=self._log, stderr=self._log)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll ``/item/1/`` until it answers 200 (both workers need not be up: warm-up follows)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/item/1/")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn for mode {self.mode} did not come up; see {self._log.name}")

    def stop(self) -> None:
        """SIGTERM to our master (it stops its workers); SIGKILL if it lingers."""
        self._proc.terminate()
        try:
            self._proc.wait(20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(20)
        self._log.close()


def wrk(url: str, duration: float, *, connections: int, threads: int = 1) -> dict[str, Any]:
    """Run wrk for *duration* seconds; requests/s, latency (ms) and errors."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    seconds = max(1, round(duration))
    command = [
        binary,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout=10s",
        "-s",
        str(WRK_SCRIPT),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"no summary from wrk: {out!r}")
    raw = json.loads(line.removeprefix("WRKJSON "))
    return {
        "requests_per_s": raw["requests"] / (raw["duration_us"] / 1e6),
        "latency_ms": {"p50": raw["p50_us"] / 1000, "p99": raw["p99_us"] / 1000, "mean": raw["mean_us"] / 1000},
        "errors": raw["connect"] + raw["read"] + raw["write"] + raw["status"] + raw["timeout"],
        "requests": raw["requests"],
    }
