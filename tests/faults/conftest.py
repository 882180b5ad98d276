"""Fixtures for the fault tests: a private MariaDB server, a proxy, pools on them, client threads.

* ``mariadb`` (session): a :class:`~tests.faults.mariadb.PrivateMariaDB`,
  started once, always stopped at the end; tests that use it skip with the
  reason when it cannot run here.
* ``private_server``: the same server, running, with its default globals and
  no session of the application user, before and after each test.
* ``second_server`` (module): another private server, with the same database and user.
* ``proxy``: a :class:`~tests.faults.proxy.Proxy` in front of it, stopped at
  the end.
* ``pool_target``: builds :class:`PoolTarget` objects, an alias whose pooled
  wrappers point at the private server (directly or through a proxy); each
  pool is closed at the end.
* :class:`Clients`: threads issuing requests through their own wrapper of one
  alias (Django wrappers belong to the thread that made them), recording each
  request's outcome.
* ``figures``: what each scenario measured, printed by the test and again in
  the terminal summary.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pytest
from django.db import connections

from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper
from django_mysql_pooled.cancel import scope as cancel_scope_module
from django_mysql_pooled.cancel.killers import all_killers
from django_mysql_pooled.pool import registry
from django_mysql_pooled.pool.pool import ConnectionPool
from tests.faults.mariadb import DATABASE, PASSWORD, USER, PrivateMariaDB, Unavailable, running_or_skip
from tests.faults.proxy import Proxy

#: Seconds added to every timing bound: two cores shared with other test runs.
TOLERANCE = 2.0

_aliases = itertools.count()
_figures: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _figures:
        terminalreporter.section("fault scenarios: figures")
        for line in _figures:
            terminalreporter.write_line(line)


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``figures(name=value, ...)``: print the scenario's figures and keep them for the summary."""

    def report(**values: object) -> None:
        line = f"{request.node.name}: " + ", ".join(f"{key}={_fmt(value)}" for key, value in values.items())
        print(line)
        _figures.append(line)

    return report


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# -- the private server and the proxy --------------------------------------------


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    """A private ``mariadbd`` for the whole session (skips the test if it cannot run here)."""
    try:
        server = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"))
    except Unavailable as exc:
        pytest.skip(f"no private MariaDB server: {exc}")
    with running_or_skip(server, "the private MariaDB server"):
        yield server


@pytest.fixture
def private_server(mariadb: PrivateMariaDB) -> Iterator[PrivateMariaDB]:
    """The private server, running with default globals and no application session."""
    mariadb.start()
    mariadb.restore()
    yield mariadb
    mariadb.start()  # a test may have left it stopped
    mariadb.restore()


@pytest.fixture(scope="module")
def second_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    """Another private ``mariadbd``, with the same database and user as the first."""
    try:
        server = PrivateMariaDB(Path(tmp_path_factory.mktemp("mariadb-second")))
        server.start()
        server.provision()
    except (Unavailable, MySQLdb.Error) as exc:
        pytest.skip(f"no second private MariaDB server: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(private_server: PrivateMariaDB) -> Iterator[Proxy]:
    """A started proxy in front of the private server; stopped (every link cut) at the end."""
    forward = Proxy((private_server.host, private_server.port))
    forward.start()
    try:
        yield forward
    finally:
        forward.stop()


# -- the server's connection limit, and query cancellation ------------------------------

TOO_MANY_CONNECTIONS = 1040  # ER_CON_COUNT_ERROR


def fill(server: PrivateMariaDB, limit: int = 30) -> list[Any]:
    """Open plain connections as the application user until the server refuses with 1040."""
    fillers: list[Any] = []
    for _ in range(limit):
        try:
            fillers.append(server.connect(user=USER, password=PASSWORD))
        except MySQLdb.OperationalError as exc:
            assert exc.args[0] == TOO_MANY_CONNECTIONS, exc
            return fillers
    for conn in fillers:
        conn.close()
    pytest.fail(f"the server accepted {limit} connections with max_connections=10")


def kills_executed(server: PrivateMariaDB) -> int:
    """``KILL`` statements *server* has run (``Com_kill``), whatever their outcome."""
    conn = server.connect()
    try:
        cursor = conn.cursor()
        cursor.execute("SHOW GLOBAL STATUS LIKE 'Com_kill'")
        return int(cursor.fetchone()[1])
    finally:
        conn.close()


@pytest.fixture
def close_killers() -> Iterator[None]:
    """Killers outlive a test (one per server and credentials): later tests count sessions."""
    yield
    for killer in all_killers():
        killer.close()


@pytest.fixture
def client_kill_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """No server-side limit: only ``KILL QUERY`` can stop the query."""
    monkeypatch.setattr(cancel_scope_module._Hook, "_with_server_limit", lambda self, raw, sql: sql)


# -- pools --------------------------------------------------------------------------


class PoolTarget:
    """A database alias with its own pool on the private server.

    :meth:`wrapper` builds a new Django wrapper of the alias; call it in the
    thread that will use (and close) the wrapper.
    """

    def __init__(self, alias: str, settings: dict[str, Any]) -> None:
        self.alias = alias
        self.settings = settings

    def __repr__(self) -> str:
        return f"<PoolTarget {self.alias!r} {self.settings['HOST']}:{self.settings['PORT']}>"

    def wrapper(self) -> PooledWrapper:
        return PooledWrapper(copy.deepcopy(self.settings), self.alias)

    @property
    def pool(self) -> ConnectionPool[Any]:
        pool = registry.get_pool(self.alias)
        assert pool is not None, f"no pool for {self.alias!r} yet: make a request first"
        return pool

    def stats(self) -> dict[str, int]:
        return self.pool.get_stats()

    def close(self) -> None:
        pool = registry.remove_pool(self.alias)
        if pool is not None:
            pool.close()


PoolTargetFactory = Callable[..., PoolTarget]


def target_settings(host: str, port: str, pool: dict[str, Any], **options: Any) -> dict[str, Any]:
    """The ``default`` alias's settings pointed at *host*/*port* as the application user, with *pool*."""
    settings = copy.deepcopy(connections["default"].settings_dict)
    kept = {k: v for k, v in (settings.get("OPTIONS") or {}).items() if k != "pool" and not k.startswith("pool_")}
    settings.update(
        NAME=DATABASE,
        USER=USER,
        PASSWORD=PASSWORD,
        HOST=host,
        PORT=port,
        CONN_MAX_AGE=0,
        OPTIONS={**kept, **options, "pool": pool},
    )
    return settings


@contextlib.contextmanager
def pool_targets(prefix: str, django_db_blocker: Any) -> Iterator[Callable[[dict[str, Any]], PoolTarget]]:
    """``add(settings)``: a :class:`PoolTarget` of a new alias ``<prefix><n>``; every pool closed at the end."""
    made: list[PoolTarget] = []

    def add(settings: dict[str, Any]) -> PoolTarget:
        target = PoolTarget(f"{prefix}{next(_aliases)}", settings)
        made.append(target)
        return target

    with django_db_blocker.unblock():
        try:
            yield add
        finally:
            for target in made:
                target.close()


@pytest.fixture
def pool_target(private_server: PrivateMariaDB, django_db_blocker: Any) -> Iterator[PoolTargetFactory]:
    """``pool_target(pool_options, via=proxy, **driver_options)``: a new alias on the private server."""
    with pool_targets("faults", django_db_blocker) as add:

        def make(pool: dict[str, Any], *, via: Proxy | None = None, **options: Any) -> PoolTarget:
            host, port = (via.host, via.port) if via is not None else (private_server.host, private_server.port)
            return add(target_settings(host, str(port), pool, **options))

        yield make


# -- client threads -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One request: when it ran and how it ended (``error`` is ``None`` on success)."""

    client: int
    seq: int
    started: float
    ended: float
    error: str | None = None
    kind: str | None = None  # the class of the original exception (PoolTimeout, OperationalError...)
    code: int | None = None  # the MySQL error number, when there is one

    @property
    def duration(self) -> float:
        return self.ended - self.started


#: ``work(wrapper, client, seq)``: one request's queries.
Work = Callable[[Any, int, int], None]


def select_one(db: Any, client: int, seq: int) -> None:
    with db.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchall()


def describe(exc: BaseException) -> tuple[str, str, int | None]:
    """``(repr, kind, code)`` of an error a caller saw, looking through Django's wrapping."""
    original = exc.__cause__ if isinstance(exc.__cause__, MySQLdb.Error) else exc
    code = original.args[0] if original.args and isinstance(original.args[0], int) else None
    return repr(exc)[:300], type(original).__name__, code


class Clients:
    """*n* threads issuing requests through their own wrapper of *target* until stopped.

    Each request checks a connection out (``cursor()``), runs *work* and
    returns the connection (``close()``), like a Django request. Bounded:
    each thread stops after *max_requests* requests or *max_seconds*.
    """

    def __init__(
        self,
        target: PoolTarget,
        n: int,
        work: Work = select_one,
        *,
        pause: float = 0.005,
        max_requests: int = 100_000,
        max_seconds: float = 60.0,
    ) -> None:
        self.target, self.n, self.work, self.pause = target, n, work, pause
        self.max_requests, self.max_seconds = max_requests, max_seconds
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"faults-client-{i}", daemon=True) for i in range(n)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the threads after their current request; fail if one does not end in time."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"client threads still running {timeout} s after stop(): {stuck}"

    def join(self, timeout: float = 60.0) -> None:
        """Wait until every thread finished its *max_requests* (without asking them to stop)."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        assert not stuck, f"client threads still running after {timeout} s: {stuck}"

    def _run(self, client: int) -> None:
        db = self.target.wrapper()
        ends = time.monotonic() + self.max_seconds
        try:
            for seq in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > ends:
                    return
                self._request(db, client, seq)
                self._stop.wait(self.pause)
        finally:
            try:
                db.close()
            except Exception as exc:
                self._record(Outcome(client, -1, time.monotonic(), time.monotonic(), *describe(exc)))

    def _request(self, db: Any, client: int, seq: int) -> None:
        started = time.monotonic()
        error: BaseException | None = None
        try:
            self.work(db, client, seq)
        except Exception as exc:
            error = exc
        try:
            db.close()
        except Exception as exc:
            error = error or exc
        ended = time.monotonic()
        if error is None:
            self._record(Outcome(client, seq, started, ended))
        else:
            self._record(Outcome(client, seq, started, ended, *describe(error)))

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)

    # -- what happened ------------------------------------------------------------

    @property
    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return sorted(self._outcomes, key=lambda o: o.started)

    def errors(self, *, started_after: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None and o.started >= started_after]

    def successes(self, *, started_after: float = 0.0) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is None and o.started >= started_after]

    def wait_for_successes(self, count: int, timeout: float = 30.0) -> None:
        """Wait until *count* requests have succeeded."""
        deadline = time.monotonic() + timeout
        while len(self.successes()) < count:
            assert time.monotonic() < deadline, f"fewer than {count} requests succeeded in {timeout} s"
            time.sleep(0.01)

    def recovered_at(self, since: float, timeout: float = 30.0) -> float:
        """Wait until every thread has completed a successful request started after *since*;
        return when the last of them completed."""
        deadline = time.monotonic() + timeout
        while True:
            firsts: dict[int, float] = {}
            for outcome in self.successes(started_after=since):
                firsts.setdefault(outcome.client, outcome.ended)
            if len(firsts) == self.n:
                return max(firsts.values())
            assert time.monotonic() < deadline, (
                f"only clients {sorted(firsts)} of {self.n} recovered within {timeout} s; "
                f"last errors: {[o.error for o in self.errors(started_after=since)][-3:]}"
            )
            time.sleep(0.01)

    def max_duration(self) -> float:
        return max((o.duration for o in self.outcomes), default=0.0)

    def error_kinds(self, *, started_after: float = 0.0) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for outcome in self.errors(started_after=started_after):
            key = f"{outcome.kind}({outcome.code})"
            kinds[key] = kinds.get(key, 0) + 1
        return kinds


def percentile(values: list[float], fraction: float) -> float:
    """The *fraction* quantile (nearest rank) of *values* (``0.0`` when empty)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> float:
    """Poll *predicate* every 10 ms; return the seconds it took, fail after *timeout*."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{message} (after {timeout} s)"
        time.sleep(0.01)
    return time.monotonic() - started
