"""Loopback proxies to the shared server that meddle with the client's queries.

* :class:`StallAfterAuth` forwards the handshake, then swallows the client's
  first COM_QUERY and never answers (a server that authenticates and then
  hangs; security review SR-1).
* :class:`HoldKills` forwards everything, but holds each ``KILL`` statement a
  while before passing it on (a kill whose answer comes after the killer's
  read timeout).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

_COM_QUERY = 0x03


def _is_query(data: bytes) -> bool:
    """*data* starts a command (sequence id 0) that is a COM_QUERY (a 4-byte header, then the command byte)."""
    return len(data) >= 5 and data[3] == 0 and data[4] == _COM_QUERY


class ClientQueryProxy:
    """Listens on a free loopback port (:attr:`port`) and pumps bytes both ways;
    :meth:`on_client_query` decides, for each read from the client that starts with a
    COM_QUERY, whether it is forwarded (subclasses)."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 3306)) -> None:
        self.upstream = upstream
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.links: list[socket.socket] = []
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def on_client_query(self, data: bytes) -> bool:
        """Called with each client read starting with a COM_QUERY; ``False``: swallow it and
        everything after (the "server" never answers again)."""
        return True

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
            if from_client and _is_query(data) and not self.on_client_query(data):
                while True:  # swallow this and everything after
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


class StallAfterAuth(ClientQueryProxy):
    """Swallows the first query of each connection; counts them (:attr:`stalled`)."""

    def __init__(self, upstream: tuple[str, int] = ("127.0.0.1", 3306)) -> None:
        self.stalled = 0
        super().__init__(upstream)

    def on_client_query(self, data: bytes) -> bool:
        self.stalled += 1
        return False


class HoldKills(ClientQueryProxy):
    """Holds each ``KILL`` statement *hold* seconds, then forwards it; counts them (:attr:`held`)."""

    def __init__(self, upstream: tuple[str, int], hold: float) -> None:
        self.hold = hold
        self.held = 0
        super().__init__(upstream)

    def on_client_query(self, data: bytes) -> bool:
        if data[5:9].upper() == b"KILL":
            self.held += 1
            time.sleep(self.hold)  # then delivered: the server runs it, whoever waits for the answer
        return True
