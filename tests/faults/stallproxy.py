"""A loopback proxy to the shared server that forwards the handshake, then swallows the client's
first COM_QUERY and never answers (a server that authenticates and then hangs; security review SR-1)."""

from __future__ import annotations

import contextlib
import socket
import threading


class StallAfterAuth:
    """Listens on a free loopback port (:attr:`port`); counts the queries it swallowed (:attr:`stalled`)."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 3306)) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.stalled = 0
        self.links: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            self.links += [client, up]
            threading.Thread(target=self._pump, args=(up, client, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, up, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                return
            if from_client and len(data) >= 5 and data[3] == 0 and data[4] == 0x03:
                self.stalled += 1
                # swallow this and everything after: the "server" never answers
                while True:
                    try:
                        if not src.recv(65536):
                            return
                    except OSError:
                        return
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._stop = True
        self.listener.close()
        for s in self.links:
            with contextlib.suppress(OSError):
                s.close()
