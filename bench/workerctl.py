"""The coordinator's handle on the worker processes (:mod:`bench.worker`) and their settings."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.modes import Server
from bench.site import counter


class WorkerError(RuntimeError):
    """A worker failed a command or did not answer in time."""


def mode_env(mode: str, server: Server, *, port: int, max_size: int, min_size: int, connects: Path) -> dict[str, str]:
    """The environment that makes ``bench.site.settings`` configure *mode*."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.site.settings",
        DMP_BENCH_MODE=mode,
        DMP_BENCH_PORT=str(port),
        DMP_BENCH_MAX_SIZE=str(max_size),
        DMP_BENCH_MIN_SIZE=str(min_size),
        DMP_BENCH_CONNECTS_FILE=str(connects),
        BENCH_DB_HOST=server.host,
        BENCH_DB_USER=server.user,
        BENCH_DB_PASSWORD=server.password,
        BENCH_DB_SSL_CA=server.ssl_ca,
        PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")])),
    )
    return env


class Worker:
    """A started worker: :meth:`call` sends a command and waits for its answer."""

    def __init__(self, mode: str, env: dict[str, str], root: Path, log: Path) -> None:
        self.mode = mode
        self.connects_file = env["DMP_BENCH_CONNECTS_FILE"]
        self._log = log.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker"],
            cwd=root,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._read(60.0)  # ready

    def connects(self) -> int:
        """Server connections this worker has opened so far."""
        return counter.read(self.connects_file)

    def call(self, op: str, timeout: float = 300.0, **args: Any) -> Any:
        assert self._proc.stdin is not None
        self._proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self._proc.stdin.flush()
        return self._read(timeout)

    def _read(self, timeout: float) -> Any:
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        line = self._proc.stdout.readline() if ready else b""
        if not line:
            raise WorkerError(f"worker {self.mode} (pid {self._proc.pid}) gave no answer; see {self._log.name}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise WorkerError(f"worker {self.mode}: {reply['error']}")
        return reply["result"]

    def close(self) -> None:
        """End the worker (ours, by its PID): close its input, then kill if it lingers."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(15)
        self._log.close()


def start_workers(
    modes: tuple[str, ...] | list[str],
    server: Server,
    root: Path,
    run_dir: Path,
    *,
    tag: str,
    port: int,
    max_size: int,
    min_size: int = 0,
) -> dict[str, Worker]:
    """Start one worker per mode (all configured alike), named *tag* in file names."""
    workers = {}
    for mode in modes:
        connects = run_dir / f"connects-{tag}-{mode}"
        connects.unlink(missing_ok=True)
        env = mode_env(mode, server, port=port, max_size=max_size, min_size=min_size, connects=connects)
        workers[mode] = Worker(mode, env, root, run_dir / f"worker-{tag}-{mode}.log")
    return workers


def close_all(workers: dict[str, Worker]) -> None:
    for worker in workers.values():
        worker.close()
