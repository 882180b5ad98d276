"""A TCP proxy on loopback that loses, stalls and slows the network on demand.

Standard library only: one thread accepts, two threads per link pump bytes.
The API follows psycopg's ``tests/fix_proxy.py`` (``start()``/``stop()``)
and adds the faults a connection pool must survive:

* :meth:`Proxy.stop` closes the listening socket and cuts every link (the
  network is gone: connects are refused, live sessions see EOF);
  :meth:`Proxy.start` listens again on the same port;
* :meth:`Proxy.cut` cuts every live link but keeps listening;
* ``deaf`` (:meth:`Proxy.deaf`): the port listens but nothing is accepted, so
  a client completes the TCP handshake (or hangs in it once the backlog is
  full) and then waits for a greeting that never comes;
* ``mute`` (:meth:`Proxy.mute`): links are accepted and kept open but no
  byte moves in either direction, live links included (a hung server or a
  black-holed network);
* :attr:`Proxy.latency` delays every chunk, :attr:`Proxy.connect_delay`
  delays only the start of each new link (a slow connection setup);
* :attr:`Proxy.fake_reset`: answers ``COM_RESET_CONNECTION`` with OK itself
  and never forwards it, as a proxy that accepts the command without
  resetting the session (what has been reported of Vitess).

Every loop polls with a short timeout and gives up after :data:`MAX_LIFETIME`
seconds, so no thread outlives a test run by much even if nobody stops it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

__all__ = ["MAX_LIFETIME", "Proxy"]

logger = logging.getLogger(__name__)

#: Seconds after which any proxy thread gives up on its own.
MAX_LIFETIME = 900.0
#: Seconds between two looks at the proxy's state from a blocked thread.
POLL = 0.05
CHUNK = 65536
#: A client's COM_RESET_CONNECTION packet (length 1, sequence 0, command 0x1f), and an OK
#: reply to it (sequence 1, no rows, status SERVER_STATUS_AUTOCOMMIT, no warnings).
COM_RESET_CONNECTION = b"\x01\x00\x00\x00\x1f"
OK_PACKET = b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"
#: Pending connections the kernel queues (a burst of 50 connects must not overflow it).
BACKLOG = 512


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._lock = threading.Lock()
        self._closed = False

    def cut(self) -> None:
        """Wake both pumps with EOF; the sockets are closed by :meth:`close`."""
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.cut()
        self.client.close()
        self.upstream.close()


class Proxy:
    """Forward ``host:port`` (loopback, fixed for the proxy's life) to ``target``.

    :param target: the ``(host, port)`` of the real server (loopback only).
    :param port: the port to listen on; ``0`` picks a free one once.
    """

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        if not target[0].startswith("127.") and target[0] != "localhost":
            raise ValueError(f"the proxy only forwards to loopback, not {target[0]!r}")
        self.target = target
        self.host = "127.0.0.1"
        if port == 0:
            with socket.socket() as probe:
                probe.bind((self.host, 0))
                port = int(probe.getsockname()[1])
        self.port = port
        #: Seconds each chunk waits before it is forwarded (both directions).
        self.latency = 0.0
        #: Seconds a new link waits before its first byte moves.
        self.connect_delay = 0.0
        #: Answer COM_RESET_CONNECTION with OK without forwarding it (a reset that does not reset).
        self.fake_reset = False
        #: Links accepted since the proxy was built.
        self.accepted = 0
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._threads: list[threading.Thread] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()  # set by stop(): every link ends
        self._accept_stop = threading.Event()  # set by stop() and deaf(): the acceptor ends
        self._acceptor: threading.Thread | None = None
        self._flowing = threading.Event()
        self._born = time.monotonic()

    def __repr__(self) -> str:
        state = "stopped" if self._listener is None else "listening" if self._acceptor else "deaf"
        flow = "flowing" if self._flowing.is_set() else "mute"
        target = f"{self.target[0]}:{self.target[1]}"
        return f"<Proxy {self.host}:{self.port} -> {target} {state} {flow} links={len(self._links)}>"

    # -- life cycle -------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the port is listening (accepting or deaf)."""
        return self._listener is not None

    @property
    def links(self) -> int:
        """Live links now."""
        with self._lock:
            return len(self._links)

    def start(self) -> None:
        """Listen on :attr:`port` and forward (idempotent); ends a mute."""
        self._flowing.set()
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(BACKLOG)
        except OSError:
            listener.close()
            raise
        listener.settimeout(POLL)
        self._listener = listener
        self._stop = threading.Event()
        self._start_accepting()
        logger.info("proxy %s:%s started", self.host, self.port)

    def _start_accepting(self) -> None:
        assert self._listener is not None
        self._accept_stop = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop,
            args=(self._listener, self._accept_stop),
            name=f"proxy-{self.port}-accept",
            daemon=True,
        )
        self._acceptor.start()

    def _stop_accepting(self) -> None:
        self._accept_stop.set()
        if self._acceptor is not None:
            self._acceptor.join(5.0)
            self._acceptor = None

    def stop(self) -> None:
        """Stop listening and cut every link: the network is gone (idempotent)."""
        self._stop_accepting()
        listener, self._listener = self._listener, None
        self._stop.set()
        self.cut()
        with self._lock:
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(5.0)
        if listener is not None:
            listener.close()
        logger.info("proxy %s:%s stopped", self.host, self.port)

    def restart(self) -> None:
        """:meth:`stop` (every link cut) then :meth:`start` on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Alias of :meth:`stop`, for ``contextlib.closing``."""
        self.stop()

    def cut(self) -> None:
        """Cut every live link (both ends see EOF); keep listening."""
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    @contextlib.contextmanager
    def deaf(self) -> Iterator[None]:
        """Listen but accept nothing while the block runs (links already open keep working).

        Connections queued meanwhile are accepted (and served) when the block ends.
        """
        if self._listener is None:
            raise RuntimeError("start() the proxy before making it deaf")
        self._stop_accepting()
        try:
            yield
        finally:
            if self._listener is not None:
                self._start_accepting()

    @contextlib.contextmanager
    def mute(self) -> Iterator[None]:
        """Accept, but move no byte on any link while the block runs."""
        self._flowing.clear()
        try:
            yield
        finally:
            self._flowing.set()

    # -- threads ----------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], *args: object, name: str) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _expired(self, stop: threading.Event) -> bool:
        return stop.is_set() or time.monotonic() - self._born > MAX_LIFETIME

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        while not self._expired(stop):
            try:
                client, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            if self._expired(stop):
                client.close()
                return
            self.accepted += 1
            self._spawn(self._serve, client, self._stop, name=f"proxy-{self.port}-link")

    def _serve(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5.0)
        except OSError as exc:
            logger.info("proxy %s: upstream %s unreachable: %s", self.port, self.target, exc)
            client.close()
            return
        link = _Link(client, upstream)
        with self._lock:
            self._links.add(link)
        try:
            if self.connect_delay > 0 and stop.wait(self.connect_delay):
                return
            client.settimeout(POLL)
            upstream.settimeout(POLL)
            other = threading.Thread(
                target=self._pump, args=(link, upstream, client, stop), name=f"proxy-{self.port}-down", daemon=True
            )
            other.start()
            try:
                self._pump(link, client, upstream, stop)
            finally:
                link.cut()
                other.join(5.0)
        finally:
            with self._lock:
                self._links.discard(link)
            link.close()

    def _fake_reset(self, link: _Link, source: socket.socket, data: bytes, stop: threading.Event) -> bool:
        """Answer a ``COM_RESET_CONNECTION`` packet from the client with OK; whether it was one."""
        if not (self.fake_reset and source is link.client and data == COM_RESET_CONNECTION):
            return False
        self._send(link.client, OK_PACKET, stop)
        return True

    def _pump(self, link: _Link, source: socket.socket, sink: socket.socket, stop: threading.Event) -> None:
        """Move chunks from *source* to *sink* until either end closes or the proxy stops.

        Whatever ends it, the whole link is cut, so the other end sees the
        close at once (as it would without the proxy).
        """
        try:
            while not self._expired(stop):
                if not self._flowing.wait(POLL):
                    continue  # mute: leave the bytes in the kernel's buffers
                try:
                    data = source.recv(CHUNK)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                if self._fake_reset(link, source, data, stop):
                    continue
                if not self._hold(stop) or not self._send(sink, data, stop):
                    return
        finally:
            link.cut()

    def _hold(self, stop: threading.Event) -> bool:
        """Keep a chunk read while muted until the mute ends, then for :attr:`latency`."""
        while not self._flowing.wait(POLL):
            if self._expired(stop):
                return False
        return not (self.latency > 0 and stop.wait(self.latency))

    def _send(self, sink: socket.socket, data: bytes, stop: threading.Event) -> bool:
        """Send all of *data*, polling (``sendall`` would give up after one timeout)."""
        view = memoryview(data)
        while view:
            if self._expired(stop):
                return False
            try:
                sent = sink.send(view)
            except TimeoutError:
                continue
            except OSError:
                return False
            view = view[sent:]
        return True
