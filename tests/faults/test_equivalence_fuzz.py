"""Differential fuzzing: whatever a checkout does, the next one looks like a fresh connection.

Hypothesis generates sequences of session-changing statements (variables,
``SET NAMES``, schema, role, user variables, temporary tables, locks,
prepared statements, handlers, transactions) run in one checkout of a pooled
connection (``max_size=1``) on the private server, interleaved with the root
account changing globals and role grants during that checkout. After
``close()`` the next checkout (the same server connection) must have the
fingerprint (:mod:`tests.session.fingerprint`) of a stock connection opened afresh
with the same settings. Statement errors are recorded, not raised. Every
global changed is put back and every role dropped after each example.
Sequences the fuzzer once failed on are kept as explicit examples (``FOUND``).
``XA START`` is left out: a pool may legitimately discard a connection with an
XA transaction instead of reusing it, which this property (same connection)
does not allow for.

The stock backend with a persistent connection must fail the same property:
Hypothesis finds a sequence that leaks, so the oracle can catch leaks.

Examples per test: ``DMP_FUZZ_EXAMPLES``. Unset, CI runs 25 derandomized
examples (the same ones every run); set, the examples are random, so a longer
run on demand explores new ground::

    DMP_FUZZ_EXAMPLES=1000 python -m pytest -p no:cacheprovider tests/faults/test_equivalence_fuzz.py
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.mysql.base import DatabaseWrapper as StockWrapper
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

from tests.faults.conftest import PoolTarget, PoolTargetFactory
from tests.faults.mariadb import DATABASE, USER, PrivateMariaDB, requires_mariadbd
from tests.session.fingerprint import (
    Probes,
    diff,
    explain,
    fingerprint,
    fresh_fingerprint,
    reference_settings,
    volatile_variables,
)

pytestmark = [requires_mariadbd, pytest.mark.timeout(300)]

OTHER = f"{DATABASE}_other"
ACCOUNT = f"'{USER}'@'127.0.0.1'"
ROLES = ("dmp_fz_r1", "dmp_fz_r2")
PROBES = Probes(
    locks=("dmp_fz_l0", "dmp_fz_l1"),
    statements=("dmp_fz_s0", "dmp_fz_s1"),
    handlers=("dmp_fz_h0",),
    tables=("dmp_fz_real", "dmp_fz_tmp"),
    unlocked_table="dmp_fz_unlocked",
)
PLACEMENTS: dict[str, dict[str, object]] = {
    "checkin": {"max_size": 1},
    "checkout": {"max_size": 1, "reset": "checkout"},
}
FUZZ = settings(
    max_examples=int(os.environ.get("DMP_FUZZ_EXAMPLES", "25")),
    derandomize="DMP_FUZZ_EXAMPLES" not in os.environ,  # CI: the same examples every run
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- what a checkout does -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """One thing done during the checkout: ``who`` is ``session`` (SQL through Django),
    ``client`` (``set_character_set(what)`` on the driver) or ``admin`` (SQL as root,
    ``"; "``-separated statements run one by one)."""

    who: str
    what: str


MODES = ["NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "ANSI", "STRICT_TRANS_TABLES", "PIPES_AS_CONCAT", "TRADITIONAL"]
MODES += ["ONLY_FULL_GROUP_BY", "NO_ENGINE_SUBSTITUTION", "NO_ZERO_DATE", "IGNORE_SPACE"]
LEVELS = ["READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]
CHARSETS = ["gbk", "big5", "latin1", "utf8mb3", "utf8mb4", "sjis", "binary"]

SESSION = [
    *(f"SET SESSION sql_mode = CONCAT(@@sql_mode, ',{mode}')" for mode in MODES),
    *(f"SET time_zone = '{zone}'" for zone in ("+00:00", "+05:30", "-08:00", "SYSTEM")),
    "SET autocommit = 0",
    "SET autocommit = 1",
    *(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}" for level in LEVELS),
    "SET SESSION TRANSACTION READ ONLY",
    "SET max_statement_time = 30",
    "SET max_statement_time = 0",
    "SET sql_auto_is_null = 1",
    "SET sql_auto_is_null = 0",
    *(f"SET character_set_results = {name}" for name in ("latin1", "utf8mb4", "NULL", "binary")),
    *(f"SET collation_connection = {name}" for name in ("utf8mb4_bin", "utf8mb4_unicode_ci", "latin1_swedish_ci")),
    "SET session_track_schema = OFF",
    "SET session_track_schema = ON",
    "SET session_track_system_variables = ''",
    "SET session_track_system_variables = '*'",
    "SET session_track_state_change = ON",
    *(f"SET NAMES {name}" for name in CHARSETS),
    f"USE `{OTHER}`",
    f"USE `{DATABASE}`",
    *(f"SET ROLE {role}" for role in ROLES),
    "SET ROLE NONE",
    "SET @dmp_fz_a = 1",
    "SET @dmp_fz_b = 'text', @dmp_fz_c = NULL",
    "CREATE TEMPORARY TABLE dmp_fz_tmp (id INT)",
    "CREATE TEMPORARY TABLE dmp_fz_real (id INT)",  # shadows the real table
    *(f"SELECT GET_LOCK('{name}', 0)" for name in PROBES.locks),
    "LOCK TABLES dmp_fz_real WRITE",
    "LOCK TABLES dmp_fz_real READ",
    "UNLOCK TABLES",
    *(f"PREPARE {name} FROM 'SELECT 1'" for name in PROBES.statements),
    "HANDLER dmp_fz_real OPEN AS dmp_fz_h0",
    "START TRANSACTION",
    "START TRANSACTION READ ONLY",
    "INSERT INTO dmp_fz_real (v) VALUES ('fuzz')",
    "COMMIT",
    "ROLLBACK",
    "SELECT LAST_INSERT_ID(4242)",
    "SET insert_id = 77",
    "SET timestamp = 1000000000",
    "SET foreign_key_checks = 0, unique_checks = 0, div_precision_increment = 9, lc_time_names = 'de_DE'",
    "SET wait_timeout = 600, net_write_timeout = 77, lock_wait_timeout = 20",
]
ADMIN_VARIABLES = {  # global -> values the admin may set (all safe for the checks)
    "sql_mode": ["'NO_BACKSLASH_ESCAPES'", "'ANSI'", "'STRICT_TRANS_TABLES,ANSI_QUOTES'", "'TRADITIONAL'", "''"],
    "autocommit": ["0", "1"],
    "tx_isolation": [f"'{level.replace(' ', '-')}'" for level in LEVELS],
    "time_zone": ["'+02:00'", "'SYSTEM'"],
    "max_statement_time": ["30", "0"],
    "sql_auto_is_null": ["1", "0"],
    "group_concat_max_len": ["77", "1024"],
    "character_set_results": ["latin1", "utf8mb4"],
    "collation_connection": ["utf8mb4_bin", "latin1_swedish_ci"],
    "session_track_schema": ["OFF", "ON"],
    "session_track_system_variables": ["''", "'*'"],
    "session_track_state_change": ["ON", "OFF"],
}
ADMIN = [
    *(f"SET GLOBAL {name} = {value}" for name, values in ADMIN_VARIABLES.items() for value in values),
    *(f"CREATE ROLE IF NOT EXISTS {role}; GRANT {role} TO {ACCOUNT}" for role in ROLES),
    *(f"CREATE ROLE IF NOT EXISTS {r}; GRANT {r} TO {ACCOUNT}; SET DEFAULT ROLE {r} FOR {ACCOUNT}" for r in ROLES),
    *(f"REVOKE {role} FROM {ACCOUNT}" for role in ROLES),
    f"SET DEFAULT ROLE NONE FOR {ACCOUNT}",
]

#: Failures the fuzzer found once, kept as explicit examples (run on top of the generated ones).
_GRANT = f"CREATE ROLE IF NOT EXISTS {ROLES[0]}; GRANT {ROLES[0]} TO {ACCOUNT}"
FOUND = [
    [Step("admin", "SET GLOBAL autocommit = 0")],
    [Step("admin", _GRANT), Step("session", f"SET ROLE {ROLES[0]}")],
    [Step("admin", f"{_GRANT}; SET DEFAULT ROLE {ROLES[0]} FOR {ACCOUNT}")],
    [Step("session", "SET NAMES binary")],
    [Step("admin", "SET GLOBAL session_track_schema = OFF"), Step("session", f"USE `{OTHER}`")],
    [Step("session", "SET session_track_schema = OFF"), Step("session", f"USE `{OTHER}`")],
    [Step("session", "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")],
]

steps = st.lists(
    st.one_of(
        st.sampled_from(SESSION).map(lambda sql: Step("session", sql)),
        st.sampled_from(CHARSETS[:-1]).map(lambda name: Step("client", name)),
        st.sampled_from(ADMIN).map(lambda sql: Step("admin", sql)),
    ),
    min_size=1,
    max_size=12,
)


# -- running it --------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_schema(mariadb: PrivateMariaDB) -> Iterator[None]:
    """Tables in the application database and a second database the application user may use."""
    mariadb.start()
    admin(
        mariadb,
        f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.dmp_fz_real (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(50))",
        f"CREATE TABLE IF NOT EXISTS `{DATABASE}`.dmp_fz_unlocked (id INT)",
        f"INSERT IGNORE INTO `{DATABASE}`.dmp_fz_real VALUES (1, 'secret')",
        f"CREATE DATABASE IF NOT EXISTS `{OTHER}`",
        f"GRANT ALL ON `{OTHER}`.* TO {ACCOUNT}",
    )
    yield
    mariadb.start()
    admin(
        mariadb,
        f"DROP TABLE IF EXISTS `{DATABASE}`.dmp_fz_real, `{DATABASE}`.dmp_fz_unlocked",
        f"REVOKE ALL ON `{OTHER}`.* FROM {ACCOUNT}",
        f"DROP DATABASE IF EXISTS `{OTHER}`",
    )


def admin(server: PrivateMariaDB, *statements: str) -> None:
    conn = server.connect()
    try:
        for sql in statements:
            conn.cursor().execute(sql)
    finally:
        conn.close()


def run_step(db: Any, root: Any, step: Step) -> str | None:
    """Do *step*; return the error it raised (``None`` when it succeeded)."""
    try:
        if step.who == "admin":
            for sql in step.what.split("; "):
                root.cursor().execute(sql)
        elif step.who == "client":
            db.ensure_connection()
            db.connection.set_character_set(step.what)
        else:
            with db.cursor() as cursor:
                cursor.execute(step.what)
                cursor.fetchall()
    except Exception as exc:  # Django's and MySQLdb's errors alike: recorded, not raised
        return f"{type(exc).__name__}{exc.args[:1]}"
    return None


@contextlib.contextmanager
def admin_session(server: PrivateMariaDB) -> Iterator[Any]:
    """A root connection; every global it may change and every role are put back at the end."""
    root = server.connect()
    cursor = root.cursor()
    names = list(ADMIN_VARIABLES)
    cursor.execute("SELECT " + ", ".join(f"@@GLOBAL.{name}" for name in names))
    originals = dict(zip(names, cursor.fetchone(), strict=True))
    try:
        yield root
    finally:
        for name, value in originals.items():
            cursor.execute(f"SET GLOBAL {name} = %s", [value])
        cursor.execute(f"SET DEFAULT ROLE NONE FOR {ACCOUNT}")
        for role in ROLES:
            cursor.execute(f"DROP ROLE IF EXISTS {role}")
        root.close()


def describe(sequence: list[Step], errors: list[str | None]) -> str:
    pairs = zip(sequence, errors, strict=True)
    return "\n".join(f"  {step.who}: {step.what}" + (f"  -> {err}" if err else "") for step, err in pairs)


def check_pooled(server: PrivateMariaDB, target: PoolTarget, sequence: list[Step]) -> None:
    """The property: after *sequence* in one checkout, the next checkout looks fresh."""
    volatile_variables(target.settings)  # measured once per server, before any global changes
    with admin_session(server) as root:
        db = target.wrapper()
        try:
            db.ensure_connection()
            first = db.connection.thread_id()
            errors = [run_step(db, root, step) for step in sequence]
        finally:
            db.close()
        # A new wrapper, as a new thread gets: Django caches what it learns of the
        # server per wrapper (sql_auto_is_null), for a stock new connection too.
        db = target.wrapper()
        try:
            db.ensure_connection()
            reused = fingerprint(db, PROBES)
            assert db.connection.thread_id() == first, "max_size=1 must hand out the same server connection"
            differences = diff(reused, fresh_fingerprint(target.settings, PROBES))
        finally:
            db.close()
            target.close()
    assert not differences, explain(differences) + "\nafter:\n" + describe(sequence, errors)


def stock_leaks(server: PrivateMariaDB, settings_dict: dict[str, Any], sequence: list[Step]) -> bool:
    """Whether a persistent stock connection shows a difference after *sequence* (the control)."""
    persistent = {**reference_settings(settings_dict), "CONN_MAX_AGE": None}
    with admin_session(server) as root:
        db = StockWrapper(persistent, "fuzz_stock")
        try:
            db.ensure_connection()
            first = db.connection.thread_id()
            for step in sequence:
                run_step(db, root, step)
            db.close_if_unusable_or_obsolete()  # what Django does at the end of each request
            db.ensure_connection()
            reused = fingerprint(db, PROBES)
            same = db.connection.thread_id() == first
        finally:
            db.close()
        return same and bool(diff(reused, fresh_fingerprint(settings_dict, PROBES)))


def require_placement(target: PoolTarget) -> None:
    db = target.wrapper()
    try:
        db.ensure_connection()
    except ImproperlyConfigured as exc:
        pytest.skip(f"OPTIONS['pool'] = {target.settings['OPTIONS']['pool']!r} is not accepted yet: {exc}")
    finally:
        db.close()
        target.close()


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_reused_session_is_fresh_whatever_happened(
    fuzz_schema: None, private_server: PrivateMariaDB, pool_target: PoolTargetFactory, placement: str
) -> None:
    require_placement(pool_target(dict(PLACEMENTS[placement])))

    def prop(sequence: list[Step]) -> None:
        check_pooled(private_server, pool_target(dict(PLACEMENTS[placement])), sequence)

    for sequence in FOUND:
        prop = example(sequence=sequence)(prop)
    FUZZ(given(sequence=steps)(prop))()


def test_stock_persistent_connection_fails_the_property(
    fuzz_schema: None, private_server: PrivateMariaDB, pool_target: PoolTargetFactory
) -> None:
    settings_dict = pool_target({"max_size": 1}).settings
    leaking = find(steps, lambda sequence: stock_leaks(private_server, settings_dict, sequence), settings=FUZZ)
    print("the stock backend leaks after:", leaking)  # find() raises NoSuchExample when nothing leaks
