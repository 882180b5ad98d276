"""The coordinator's handle on a :mod:`bench.proxy` process it started."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.modes import Server


class ProxyProcess:
    """Start a proxy in front of *server*; ``port`` is where clients connect."""

    def __init__(self, server: Server, root: Path, *, delay_ms: float = 0.0, connect_delay_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms
        command = [
            sys.executable,
            "-m",
            "bench.proxy",
            f"--upstream={server.host}:{server.port}",
            f"--delay-ms={delay_ms}",
            f"--connect-delay-ms={connect_delay_ms}",
        ]
        self._proc = subprocess.Popen(command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        ports = json.loads(self._proc.stdout.readline())
        self.port: int = ports["port"]
        self._control = socket.create_connection(("127.0.0.1", ports["control"]), timeout=30)
        self._stream = self._control.makefile("rw", encoding="utf-8")

    def _ask(self, command: str) -> dict[str, Any]:
        self._stream.write(command + "\n")
        self._stream.flush()
        reply: dict[str, Any] = json.loads(self._stream.readline())
        return reply

    def reset(self) -> None:
        """Zero the counters."""
        self._ask("reset")

    def stats(self) -> dict[str, Any]:
        """Connections accepted and client packets by category and label since the last reset."""
        return self._ask("stats")

    def close(self) -> None:
        """Stop the proxy process (ours, by its PID)."""
        with contextlib.suppress(OSError, ValueError):
            self._ask("quit")
        self._stream.close()
        self._control.close()
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(10)
