"""Soak: mixed reads and writes from many threads while the server and the network misbehave.

Twelve threads share one pool of six connections on the private server,
through the proxy. Every :data:`FAULT_EVERY` seconds one fault of
:data:`FAULTS` strikes, in turn: ``KILL CONNECTION`` (from an admin
connection) of every session of the pool, of a random half of them, or of
one session in the middle of a write's transaction; a cut of every link of
the proxy; and the same kill and cut during a lull, when every pooled
connection is idle. Once per run (every :data:`RESTART_EVERY` seconds in a
long one) the server itself is killed with ``SIGKILL`` and started again.

Each request is one checkout, like a Django request:

1. it asserts that its session is clean: no ``@soak_marker``, no named lock
   of its connection, ``sql_mode``, ``time_zone`` and ``autocommit`` at the
   server's defaults, Django's isolation level (``READ COMMITTED``), the
   configured schema, no open transaction, no temporary table ``soak_tmp``
   and no prepared statement ``soak_stmt``; a deviation is a *leak*;
2. it writes (half of the requests) or reads: a write inserts a unique key
   into two tables in one ``transaction.atomic()``; a read looks up a key
   already acknowledged, which must be there;
3. it dirties the session with all of the above, and leaves a transaction
   open holding a "poison" row, before returning the connection.

Every write is classified by what its caller saw: *acknowledged* (the
``atomic()`` block exited without error), *failed* (an error before the
commit: the transaction cannot have committed) or *unknown* (the connection
was lost or killed during ``COMMIT``: it may or may not have committed). At
the end, every acknowledged write must be stored (in both tables), no failed
one may be, no poison row may be, and no leak may have been seen.

A control runs the same requests on a pool with ``reset: False``, where the
checks must see every leak that a reset prevents.

The run lasts ``DMP_SOAK_SECONDS`` seconds of load (default 20, about 25 s
with the set-up); for a long soak::

    DMP_SOAK_SECONDS=600 python -m pytest -p no:cacheprovider tests/faults/test_soak.py -q -s
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import MySQLdb
import pytest
from django.db import DatabaseError, connections, transaction

from tests.faults.conftest import TOLERANCE, Clients, Outcome, PoolTarget, PoolTargetFactory, describe, wait_until
from tests.faults.mariadb import DATABASE, PrivateMariaDB, requires_mariadbd
from tests.faults.proxy import Proxy

#: Seconds of load (faults included); the short default runs in CI.
SOAK_SECONDS = float(os.environ.get("DMP_SOAK_SECONDS", "20"))

pytestmark = [requires_mariadbd, pytest.mark.slow, pytest.mark.timeout(int(SOAK_SECONDS) + 240)]

THREADS = 12
MAX_SIZE = 6
TIMEOUT = 5.0  # the pool's checkout timeout, seconds
FAULT_EVERY = 1.5  # seconds between two faults
#: Seconds between two server restarts in a long soak (a short one restarts once, halfway).
RESTART_EVERY = 300.0
DOWN_FOR = 1.0  # seconds the server stays down at a restart
#: A request that starts this long after a fault ended must not see it.
GRACE = 1.0
#: Seconds between losing every idle connection and resuming the load.
IDLE_LOSS_SETTLE = 0.05
WRITE_SHARE = 0.5
PAUSE = float(os.environ.get("DMP_SOAK_PAUSE", "0.01"))  # seconds a client thinks between two requests
#: Seconds a request waits, at most, for a lull to end.
LULL_MAX = 15.0
#: Seconds a write waits to be killed by a kill_before_* fault (and the fault waits for such a write).
VICTIM_WAIT = 2.0

#: The faults, in turn (the server restart comes at its own times).
FAULTS = (
    "kill_idle",  # a lull, then KILL CONNECTION of every (idle) session of the pool
    "kill_before_insert",  # KILL CONNECTION of a session between the two INSERTs of a write
    "proxy_cut",  # every link cut under load
    "kill_all",  # KILL CONNECTION of every session under load
    "kill_before_commit",  # KILL CONNECTION of a session whose write is about to COMMIT
    "cut_idle",  # a lull, then every link cut
    "kill_half",  # KILL CONNECTION of a random half of the sessions under load
)

#: Errors during ``COMMIT`` after which the caller cannot know whether it committed:
#: the server shut down (1053) or killed the connection (1927), or the client lost it (2006, 2013).
LOST_DURING_COMMIT = {1053, 1927, 2006, 2013}
ER_NO_SUCH_TABLE = 1146
ER_UNKNOWN_STMT_HANDLER = 1243

#: What a clean session looks like, one boolean column each, and the connection id.
CHECK = """
SELECT @soak_marker IS NULL,
       IS_USED_LOCK(CONCAT('soak_', CONNECTION_ID())) IS NULL,
       @@SESSION.sql_mode = @@GLOBAL.sql_mode,
       @@SESSION.time_zone = @@GLOBAL.time_zone,
       @@SESSION.autocommit = 1,
       @@SESSION.tx_isolation = 'READ-COMMITTED',
       DATABASE() = %s,
       @@in_transaction = 0,
       CONNECTION_ID()
"""
CHECKED = (
    "user_variable",
    "named_lock",
    "sql_mode",
    "time_zone",
    "autocommit",
    "isolation_level",
    "schema",
    "open_transaction",
)

#: What each request leaves behind (one round trip; the poison row's transaction stays open).
DIRTY = """
SET @soak_marker = %s,
    @soak_lock = GET_LOCK(CONCAT('soak_', CONNECTION_ID()), 0),
    SESSION sql_mode = '',
    SESSION time_zone = '+05:00',
    SESSION tx_isolation = 'SERIALIZABLE',
    SESSION autocommit = 0;
PREPARE soak_stmt FROM 'SELECT 1';
CREATE TEMPORARY TABLE soak_tmp (x INT);
INSERT INTO soak_poison (k) VALUES (%s);
USE information_schema
"""


@dataclasses.dataclass
class Fault:
    kind: str
    started: float
    ended: float = 0.0
    sessions_killed: int = 0


class Ledger:
    """Every attempted write's key and what its caller saw; the leaks and missing reads seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys = itertools.count(1)
        self.writes: dict[int, str] = {}  # key -> "pending", "acknowledged", "failed", "unknown"
        self.acknowledged: list[int] = []
        self.leaks: list[str] = []
        self.missing_reads: list[int] = []
        self.reads = 0
        self.commit_errors: dict[str, int] = {}
        self.errors_by_step: dict[str, int] = {}
        # The kill_in_transaction fault: the next write reaching *_victim_at* publishes its
        # connection id and waits (at most VICTIM_WAIT s) until the fault has killed it.
        self._victim_at: str | None = None
        self._victim: int | None = None
        self._victim_found = threading.Event()
        self._victim_killed = threading.Event()
        #: Cleared for a lull: requests wait before checking a connection out.
        self.go = threading.Event()
        self.go.set()

    def new_key(self) -> int:
        key = next(self._keys)
        with self._lock:
            self.writes[key] = "pending"
        return key

    def settle(self, key: int, outcome: str) -> None:
        with self._lock:
            self.writes[key] = outcome
            if outcome == "acknowledged":
                self.acknowledged.append(key)

    def some_acknowledged(self) -> int | None:
        with self._lock:
            return random.choice(self.acknowledged) if self.acknowledged else None

    def commit_error(self, kind: str) -> None:
        with self._lock:
            self.commit_errors[kind] = self.commit_errors.get(kind, 0) + 1

    def want_victim(self, at: str) -> None:
        """Ask the next write reaching *at* (``"insert"`` or ``"commit"``) to wait to be killed."""
        with self._lock:
            self._victim_at, self._victim = at, None
            self._victim_found.clear()
            self._victim_killed.clear()

    def offer_victim(self, at: str, conn_id: int) -> None:
        """Called by a write at *at*: if a victim is wanted there, become it and wait for the kill."""
        with self._lock:
            if self._victim_at != at:
                return
            self._victim_at, self._victim = None, conn_id
        self._victim_found.set()
        self._victim_killed.wait(VICTIM_WAIT)

    def victim(self, timeout: float) -> int | None:
        """The connection id of the write waiting to be killed (``None`` if none came in *timeout*)."""
        found = self._victim_found.wait(timeout)
        with self._lock:
            self._victim_at = None  # too late for anyone else
            return self._victim if found else None

    def victim_killed(self) -> None:
        self._victim_killed.set()

    def step_failed(self, step: str) -> None:
        with self._lock:
            self.errors_by_step[step] = self.errors_by_step.get(step, 0) + 1

    def read_done(self, key: int, found: bool) -> None:
        with self._lock:
            self.reads += 1
            if not found:
                self.missing_reads.append(key)

    def leak(self, what: str) -> None:
        with self._lock:
            self.leaks.append(what)

    def keys(self, outcome: str) -> set[int]:
        with self._lock:
            return {key for key, seen in self.writes.items() if seen == outcome}


def probe_missing(cursor: Any, statement: str, expected: int) -> bool:
    """Run *statement*; return whether it failed with *expected* (the object is absent).

    Any other error (the connection died) is raised: it is a request error, not a leak.
    """
    try:
        cursor.execute(statement)
        cursor.fetchall()
    except DatabaseError as exc:
        if describe(exc)[2] == expected:
            return True
        raise
    return False


def check_clean(db: Any, ledger: Ledger) -> None:
    with db.cursor() as cursor:
        cursor.execute(CHECK, [DATABASE])
        *flags, conn_id = cursor.fetchone()
        for name, clean in zip(CHECKED, flags, strict=True):
            if not clean:
                ledger.leak(f"{name} on connection {conn_id}")
        if not probe_missing(cursor, f"SELECT COUNT(*) FROM `{DATABASE}`.soak_tmp", ER_NO_SUCH_TABLE):
            ledger.leak(f"temporary_table on connection {conn_id}")
        if not probe_missing(cursor, "EXECUTE soak_stmt", ER_UNKNOWN_STMT_HANDLER):
            ledger.leak(f"prepared_statement on connection {conn_id}")


def write(db: Any, ledger: Ledger, client: int, seq: int) -> None:
    key = ledger.new_key()
    committing = False
    try:
        with transaction.atomic(using=db.alias):
            with db.cursor() as cursor:
                cursor.execute("INSERT INTO soak_writes (k, client, seq) VALUES (%s, %s, %s)", [key, client, seq])
                ledger.offer_victim("insert", db.connection.thread_id())
                cursor.execute("INSERT INTO soak_audit (k) VALUES (%s)", [key])
                ledger.offer_victim("commit", db.connection.thread_id())
            committing = True  # the block is done: what raises now comes from COMMIT
    except Exception as exc:
        _text, kind, code = describe(exc)
        if committing:
            ledger.commit_error(f"{kind}({code})")
        ledger.settle(key, "unknown" if committing and code in LOST_DURING_COMMIT else "failed")
        raise
    ledger.settle(key, "acknowledged")


def read(db: Any, ledger: Ledger, client: int) -> None:
    key = ledger.some_acknowledged() or 0
    with db.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT COUNT(*) FROM soak_writes WHERE client = %s), "
            "(SELECT COUNT(*) FROM soak_writes WHERE k = %s) + (SELECT COUNT(*) FROM soak_audit WHERE k = %s)",
            [client, key, key],
        )
        _count, found = cursor.fetchone()
    ledger.read_done(key, not key or found == 2)


_poison = itertools.count(1)


def dirty(db: Any) -> None:
    with db.cursor() as cursor:
        cursor.execute(DIRTY, [random.randrange(1, 1 << 30), next(_poison)])
        while cursor.nextset():
            pass


def soak_request(ledger: Ledger) -> Callable[[Any, int, int], None]:
    def work(db: Any, client: int, seq: int) -> None:
        ledger.go.wait(LULL_MAX)
        connections[db.alias] = db  # this thread's wrapper of the alias, for transaction.atomic(using=...)
        step = "check"
        try:
            check_clean(db, ledger)
            if random.random() < WRITE_SHARE:
                step = "write"
                write(db, ledger, client, seq)
            else:
                step = "read"
                read(db, ledger, client)
            step = "dirty"
            dirty(db)
        except Exception:
            ledger.step_failed(step)
            raise

    return work


# -- faults ------------------------------------------------------------------------


def kill_sessions(server: PrivateMariaDB, share: float) -> int:
    """``KILL CONNECTION`` a random *share* (at least one) of the application's sessions."""
    victims = server.sessions()
    if share < 1.0:
        victims = random.sample(victims, max(1, int(len(victims) * share))) if victims else []
    admin = server.connect()
    try:
        for conn_id in victims:
            with contextlib.suppress(MySQLdb.OperationalError):  # gone meanwhile
                admin.cursor().execute(f"KILL CONNECTION {int(conn_id)}")
    finally:
        admin.close()
    return len(victims)


def kill_in_transaction(server: PrivateMariaDB, ledger: Ledger, at: str) -> int:
    """``KILL CONNECTION`` a session inside a write's transaction, before its second
    ``INSERT`` (*at* ``"insert"``) or before its ``COMMIT`` (*at* ``"commit"``)."""
    admin = server.connect()
    try:
        ledger.want_victim(at)
        conn_id = ledger.victim(timeout=VICTIM_WAIT)
        if conn_id is not None:
            with contextlib.suppress(MySQLdb.OperationalError):  # gone meanwhile
                admin.cursor().execute(f"KILL CONNECTION {int(conn_id)}")
    finally:
        ledger.victim_killed()
        admin.close()
    return int(conn_id is not None)


def inject(kind: str, server: PrivateMariaDB, proxy: Proxy, ledger: Ledger, target: PoolTarget) -> Fault:
    fault = Fault(kind, time.monotonic())
    if kind.endswith("_idle"):  # in a lull: every pooled connection is idle when it is lost
        ledger.go.clear()
        try:
            wait_until(lambda: target.stats()["connections_in_use"] == 0, 10.0, "the lull did not idle the pool")
            if kind == "kill_idle":
                victims = set(server.sessions())
                fault.sessions_killed = kill_sessions(server, 1.0)
                wait_until(lambda: not victims & set(server.sessions()), 10.0, "the killed sessions stayed")
            else:
                fault.sessions_killed = proxy.links
                proxy.cut()
            # The loss reaches the pool's side of the proxy a moment later: a checkout
            # within the validation window trusts a socket that shows no EOF yet
            # (the zero-round-trip check). "Lost while idle" is lost before the checkout.
            time.sleep(IDLE_LOSS_SETTLE)
        finally:
            ledger.go.set()
    elif kind == "kill_all":
        fault.sessions_killed = kill_sessions(server, 1.0)
    elif kind.startswith("kill_before_"):
        fault.sessions_killed = kill_in_transaction(server, ledger, kind.removeprefix("kill_before_"))
    elif kind == "kill_half":
        fault.sessions_killed = kill_sessions(server, 0.5)
    elif kind == "proxy_cut":
        fault.sessions_killed = proxy.links
        proxy.cut()
    else:
        assert kind == "restart"
        server.restart(crash=True, down_for=DOWN_FOR)
    fault.ended = time.monotonic()
    return fault


def restart_times(seconds: float) -> list[float]:
    """When (seconds into the load) the server restarts: halfway, or every :data:`RESTART_EVERY`."""
    count = max(1, int(seconds // RESTART_EVERY))
    return [seconds * (i + 0.5) / count for i in range(count)]


def during_a_fault(outcome: Outcome, faults: list[Fault]) -> bool:
    return any(outcome.started <= f.ended + GRACE and outcome.ended >= f.started for f in faults)


def errors_by_fault(errors: list[Outcome], faults: list[Fault]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for outcome in errors:
        kind = next((f.kind for f in faults if during_a_fault(outcome, [f])), "none")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture
def soak_tables(private_server: PrivateMariaDB) -> Iterator[None]:
    conn = private_server.connect(db=DATABASE)
    try:
        cursor = conn.cursor()
        for table in ("soak_writes", "soak_audit", "soak_poison"):
            cursor.execute(f"DROP TABLE IF EXISTS {table}")
        cursor.execute("CREATE TABLE soak_writes (k BIGINT PRIMARY KEY, client INT, seq INT, KEY (client))")
        cursor.execute("CREATE TABLE soak_audit (k BIGINT PRIMARY KEY)")
        cursor.execute("CREATE TABLE soak_poison (k BIGINT PRIMARY KEY)")
    finally:
        conn.close()
    yield


@pytest.fixture
def quiet_pool_logs() -> Iterator[None]:
    """Keep the pool's per-request warnings (a rolled-back transaction at checkin) out of the captured log."""
    logger = logging.getLogger("django_mysql_pooled")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def stored_keys(server: PrivateMariaDB, table: str) -> set[int]:
    conn = server.connect(db=DATABASE)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT k FROM {table}")
        return {int(row[0]) for row in cursor.fetchall()}
    finally:
        conn.close()


# -- the soak ----------------------------------------------------------------------


def test_soak_with_faults_loses_no_acknowledged_write_and_leaks_no_session_state(
    private_server: PrivateMariaDB,
    proxy: Proxy,
    pool_target: PoolTargetFactory,
    soak_tables: None,
    quiet_pool_logs: None,
    figures: Callable[..., None],
) -> None:
    target: PoolTarget = pool_target({"max_size": MAX_SIZE, "timeout": TIMEOUT}, via=proxy)
    ledger = Ledger()
    faults: list[Fault] = []
    kinds = itertools.cycle(FAULTS)
    max_pool_size = max_in_use = 0
    with Clients(target, THREADS, soak_request(ledger), pause=PAUSE, max_seconds=SOAK_SECONDS + 120.0) as clients:
        clients.wait_for_successes(50)
        started = time.monotonic()
        ends = started + SOAK_SECONDS
        restarts = [started + t for t in restart_times(SOAK_SECONDS)]
        next_fault = started + FAULT_EVERY
        while (now := time.monotonic()) < ends:
            stats = target.stats()
            max_pool_size = max(max_pool_size, stats["pool_size"])
            max_in_use = max(max_in_use, stats["connections_in_use"])
            if now >= next_fault and now < ends - FAULT_EVERY:  # the last stretch is fault-free
                due = restarts and now >= restarts[0]
                if due:
                    restarts.pop(0)
                faults.append(inject("restart" if due else next(kinds), private_server, proxy, ledger, target))
                next_fault = time.monotonic() + FAULT_EVERY
            time.sleep(0.05)
        last_fault_end = max(f.ended for f in faults)
        recovered_at = clients.recovered_at(last_fault_end)
    stats = target.stats()
    wait_until(
        lambda: len(private_server.sessions()) == target.stats()["pool_size"],
        10.0,
        "the pool's size differs from the sessions it has on the server",
    )

    writes, audit, poison = (stored_keys(private_server, t) for t in ("soak_writes", "soak_audit", "soak_poison"))
    acknowledged, failed, unknown = ledger.keys("acknowledged"), ledger.keys("failed"), ledger.keys("unknown")
    pending = ledger.keys("pending")
    lost = acknowledged - (writes & audit)
    failed_but_stored = failed & (writes | audit)
    stray = [o for o in clients.errors() if not during_a_fault(o, faults)]
    by_fault = errors_by_fault(clients.errors(), faults)
    fault_counts: dict[str, int] = {}
    for fault in faults:
        fault_counts[fault.kind] = fault_counts.get(fault.kind, 0) + 1
    figures(
        seconds=SOAK_SECONDS,
        threads=THREADS,
        max_size=MAX_SIZE,
        requests=len(clients.outcomes),
        request_errors=len(clients.errors()),
        reads=ledger.reads,
        writes=len(ledger.writes),
        acknowledged=len(acknowledged),
        failed=len(failed),
        unknown=len(unknown),
        unknown_stored=len(unknown & writes),
        leaks=len(ledger.leaks),
        lost_acknowledged=len(lost),
        failed_but_stored=len(failed_but_stored),
        missing_reads=len(ledger.missing_reads),
        half_written=len(writes ^ audit),
        poison_rows=len(poison),
        faults=fault_counts,
        sessions_killed_or_cut=sum(f.sessions_killed for f in faults),
        stray_errors=len(stray),
        error_kinds=clients.error_kinds(),
        errors_by_step=ledger.errors_by_step,
        errors_by_fault=by_fault,
        commit_errors=ledger.commit_errors,
        max_request_s=clients.max_duration(),
        recovery_s=recovered_at - last_fault_end,
        max_pool_size=max_pool_size,
        max_in_use=max_in_use,
        connections_opened=stats["connections_num"],
        resets_failed=stats["resets_failed"],
        rolled_back_at_checkin=stats["returns_rolled_back"],
    )
    assert not ledger.leaks, f"session state leaked into later requests: {ledger.leaks[:10]}"
    assert not lost, f"acknowledged writes lost: {sorted(lost)[:10]}"
    assert not failed_but_stored, f"writes that failed before COMMIT were stored: {sorted(failed_but_stored)[:10]}"
    assert not ledger.missing_reads, f"acknowledged writes not found by a later read: {ledger.missing_reads[:10]}"
    assert not writes ^ audit, f"half-committed transactions: {sorted(writes ^ audit)[:10]}"
    assert not poison, f"rows of transactions left open at checkin were committed: {sorted(poison)[:10]}"
    assert not pending, f"writes with no outcome: {sorted(pending)[:10]}"
    assert not stray, f"errors away from any fault: {[o.error for o in stray][:5]}"
    # Lost while idle: lost before the checkout began. A checkout racing the loss
    # (a client past the lull's gate) may meet it on its first statement: the
    # zero-round-trip check cannot see a close still in flight.
    idle_faults = [f for f in faults if f.kind.endswith("_idle")]
    idle_errors = errors_by_fault(
        [o for o in clients.errors() if any(during_a_fault(o, [f]) and o.started > f.ended for f in idle_faults)],
        idle_faults,
    )
    assert not idle_errors, f"a connection lost while idle reached a caller: {idle_errors}"
    assert stats["resets_failed"] >= 1, "no reset found a lost connection"
    assert fault_counts.get("restart", 0) >= 1 and len(faults) >= 5, fault_counts
    assert len(acknowledged) >= 100 and ledger.reads >= 100
    assert max_pool_size <= MAX_SIZE
    assert clients.max_duration() <= TIMEOUT + DOWN_FOR + TOLERANCE
    assert recovered_at - last_fault_end <= 1.0 + TOLERANCE
    assert stats["connections_in_use"] == 0
    assert stats["pool_size"] <= MAX_SIZE


def test_soak_checks_see_every_leak_without_reset(
    pool_target: PoolTargetFactory, soak_tables: None, quiet_pool_logs: None, figures: Callable[..., None]
) -> None:
    """The control: with ``reset: False`` the soak's checks find what the previous checkout left."""
    target = pool_target({"max_size": 1, "timeout": TIMEOUT, "reset": False})
    ledger = Ledger()
    db = target.wrapper()
    try:
        check_clean(db, ledger)  # a new connection: clean
        dirty(db)
        db.close()
        check_clean(db, ledger)  # the same connection, not reset
    finally:
        db.close()
    seen = sorted({leak.split(" on ")[0] for leak in ledger.leaks})
    figures(leaks=len(ledger.leaks), kinds=seen)
    # Reset or not, the pool rolls an open transaction back at checkin and
    # Django sets autocommit at every connect().
    survivors = {"open_transaction", "autocommit"}
    assert seen == sorted([*(c for c in CHECKED if c not in survivors), "temporary_table", "prepared_statement"])
