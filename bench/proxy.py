"""A TCP proxy on loopback: adds latency, slows connection setup, counts MySQL commands.

Run as a separate process (its own GIL), ``python -m bench.proxy --delay-ms 0.2``:
it prints ``{"port": P, "control": Q}`` and then serves until told ``quit`` on
the control port, until its standard input closes, or ``--max-seconds``.

Latency is added per direction with one reader and one writer thread: the
reader stamps each chunk with ``now + delay`` and the writer sleeps until then
(``time.sleep`` is precise to tens of microseconds, asyncio's timers only to a
millisecond). Connection setup is slowed by sleeping before connecting upstream.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import queue
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.mysqlproto import PacketScanner, classify


class Tally:
    """What the clients sent, since the last reset (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.connections = 0
            self.categories: Counter[str] = Counter()  # round trips (packets starting a command)
            self.statements: Counter[str] = Counter()  # statements by category
            self.labels: Counter[str] = Counter()

    def connected(self) -> None:
        with self._lock:
            self.connections += 1

    def packet(self, seq: int, payload: bytes) -> None:
        category, statements = classify(seq, payload)
        with self._lock:
            self.categories[category] += 1
            for kind, label in statements:
                self.statements[kind] += 1
                self.labels[f"{kind}: {label}"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connections": self.connections,
                "categories": dict(self.categories),
                "statements": dict(self.statements),
                "labels": dict(self.labels),
            }


def _close_quietly(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.close()


def _pump(src: socket.socket, dst: socket.socket, delay: float, observe: Callable[[bytes], None] | None) -> None:
    """Copy *src* to *dst*, each chunk *delay* seconds late; half-close *dst* at EOF."""
    pending: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
    writer = None
    if delay > 0:
        writer = threading.Thread(target=_delayed_writer, args=(pending, dst), daemon=True)
        writer.start()
    try:
        while chunk := src.recv(65536):
            if observe is not None:
                observe(chunk)
            if writer is None:
                dst.sendall(chunk)
            else:
                pending.put((time.monotonic() + delay, chunk))
    except OSError:
        _close_quietly(src, dst)  # a reset: unblock the other direction too
    finally:
        pending.put(None)
        if writer is not None:
            writer.join(5.0)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _delayed_writer(pending: queue.SimpleQueue[tuple[float, bytes] | None], dst: socket.socket) -> None:
    while (item := pending.get()) is not None:
        due, chunk = item
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            dst.sendall(chunk)
        except OSError:
            return


class Proxy:
    """Accepts on *listener* and forwards every connection to *upstream*."""

    def __init__(self, upstream: tuple[str, int], delay: float, connect_delay: float, tally: Tally) -> None:
        self.upstream, self.delay, self.connect_delay, self.tally = upstream, delay, connect_delay, tally
        self.stop = threading.Event()

    def serve(self, listener: socket.socket, deadline: float) -> None:
        listener.settimeout(0.2)
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                client, _addr = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        self.tally.connected()
        if self.connect_delay > 0:
            time.sleep(self.connect_delay)
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            _close_quietly(client)
            return
        upstream.settimeout(None)
        client.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        scanner = PacketScanner(self.tally.packet)
        back = threading.Thread(target=_pump, args=(upstream, client, self.delay, None), daemon=True)
        back.start()
        _pump(client, upstream, self.delay, scanner.feed)
        back.join(30.0)
        _close_quietly(client, upstream)


def _control(listener: socket.socket, proxy: Proxy) -> None:
    """Line commands on the control port: ``stats``, ``reset``, ``quit``."""
    while not proxy.stop.is_set():
        conn, _addr = listener.accept()
        with conn, conn.makefile("rw", encoding="utf-8") as stream:
            for line in stream:
                command = line.strip()
                if command == "reset":
                    proxy.tally.reset()
                    reply: dict[str, Any] = {"ok": True}
                elif command == "stats":
                    reply = proxy.tally.snapshot()
                else:
                    proxy.stop.set()
                    reply = {"ok": True}
                stream.write(json.dumps(reply) + "\n")
                stream.flush()
                if proxy.stop.is_set():
                    return


def _watch_stdin(proxy: Proxy) -> None:
    sys.stdin.read()  # returns when the parent closes the pipe or dies
    proxy.stop.set()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", default="127.0.0.1:3306")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="latency added in each direction")
    parser.add_argument("--connect-delay-ms", type=float, default=0.0, help="delay before connecting upstream")
    parser.add_argument("--max-seconds", type=float, default=4 * 3600.0)
    args = parser.parse_args(argv)
    host, port = args.upstream.rsplit(":", 1)
    proxy = Proxy((host, int(port)), args.delay_ms / 1000, args.connect_delay_ms / 1000, Tally())
    listener = socket.create_server(("127.0.0.1", 0), backlog=256)
    control = socket.create_server(("127.0.0.1", 0))
    print(json.dumps({"port": listener.getsockname()[1], "control": control.getsockname()[1]}), flush=True)
    threading.Thread(target=_control, args=(control, proxy), daemon=True).start()
    threading.Thread(target=_watch_stdin, args=(proxy,), daemon=True).start()
    proxy.serve(listener, time.monotonic() + args.max_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
