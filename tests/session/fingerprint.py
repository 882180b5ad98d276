"""The session fingerprint: what a checkout can observe of the session it was handed.

:func:`fingerprint` is taken on a Django wrapper right after a checkout
(``ensure_connection()``). It reads the client library's view first, before
any query (every server reply updates the client's status flags), then the
server's, through a Django cursor so that whatever the backend keeps pending
is sent first. :func:`fresh_fingerprint` takes the same fingerprint of a
stock ``django.db.backends.mysql`` connection opened afresh with the same
settings: the oracle a reused session is compared with (:func:`diff`).

Session variables whose value differs between two fresh connections, or
between two reads of one (ids, clocks, seeds), are volatile: they are
measured once per server (:func:`volatile_variables`), never hand-listed.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.mysql.base import DatabaseWrapper as StockWrapper

from django_mysql_pooled.session.native import native_client

__all__ = [
    "Probes",
    "diff",
    "explain",
    "fingerprint",
    "fresh_fingerprint",
    "reference_settings",
    "volatile_variables",
]

#: The server status flags (mysql_com.h) that say something about the session.
STATUS_FLAGS = {
    "IN_TRANS": 0x0001,
    "AUTOCOMMIT": 0x0002,
    "MORE_RESULTS_EXIST": 0x0008,
    "NO_BACKSLASH_ESCAPES": 0x0200,
    "IN_TRANS_READONLY": 0x2000,
}
#: What the client escapes; the last one is valid UTF-8 whose bytes a GBK or
#: Big5 escaper pairs up so that the backslash is not escaped.
ESCAPED = b"x'y\\z\""
PARAMETERS = ("x'y\\z\"", "\u4e2d\\' OR 1=1 -- ")
TABLE_NOT_LOCKED = 1100  # ER_TABLE_NOT_LOCKED: LOCK TABLES is in effect

_volatile: dict[str, frozenset[str]] = {}
_aliases = itertools.count()


def _outcome(call: Callable[[], object]) -> object:
    """The value of *call()*, or the error it raised (code, or class name) as a string."""
    try:
        return call()
    except Exception as exc:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else type(exc).__name__
        return f"error {code}"


def client_side(raw: Any) -> dict[str, object]:
    """What the client library believes of *raw* (a MySQLdb connection); sends nothing."""
    client = native_client()
    status = client.server_status(raw)
    flags = None if status is None else tuple(name for name, bit in STATUS_FLAGS.items() if status & bit)
    cursor = raw.cursor()  # never executed nor closed: close() may read pending results
    render = getattr(cursor, "_mogrify", None) or cursor.mogrify
    found: dict[str, object] = {
        "client:status_flags": flags,
        "client:charset": _outcome(raw.character_set_name),
        "client:encoding": raw.encoding,
        "client:autocommit": _outcome(raw.get_autocommit),
        "client:schema": _outcome(lambda: client.schema(raw)),
        "client:escape_string": _outcome(lambda: raw.escape_string(ESCAPED)),
    }
    for i, value in enumerate(PARAMETERS):
        found[f"client:literal:{i}"] = _outcome(functools.partial(raw.literal, value))
        found[f"client:mogrify:{i}"] = _outcome(functools.partial(render, "SELECT %s", (value,)))
    return found


def _rows(cursor: Any, sql: str, params: Sequence[object] | None = None) -> object:
    def run() -> object:
        cursor.execute(sql, params)
        return tuple(tuple(row) for row in cursor.fetchall())

    return _outcome(run)


def _scalar(cursor: Any, sql: str) -> object:
    rows = _rows(cursor, sql)
    return rows[0][0] if isinstance(rows, tuple) and rows else rows


def session_variables(cursor: Any) -> dict[str, object]:
    """Every row of ``information_schema.SESSION_VARIABLES`` (name -> value)."""
    cursor.execute("SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.SESSION_VARIABLES")
    return {str(name).lower(): value for name, value in cursor.fetchall()}


def _has_table(cursor: Any, name: str) -> bool:
    cursor.execute(
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'information_schema' AND TABLE_NAME = %s",
        [name],
    )
    return bool(cursor.fetchone()[0])


@dataclasses.dataclass(frozen=True)
class Probes:
    """Names of per-session objects a workload may create, to look for by name.

    Only names whose probes are side-effect free: each of ``statements`` is
    run with ``EXECUTE`` (prepare only a ``SELECT`` under these names), each
    of ``handlers`` read with ``READ FIRST``; ``tables`` are shown with
    ``SHOW CREATE TABLE``, which says ``TEMPORARY`` for a temporary table,
    also one shadowing a real table; ``unlocked_table`` is a table the
    workload never locks: reading it fails with error 1100 under ``LOCK TABLES``.
    """

    locks: tuple[str, ...] = ()
    statements: tuple[str, ...] = ()
    handlers: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    unlocked_table: str | None = None


def server_side(cursor: Any, probes: Probes, thread_id: int) -> dict[str, object]:
    """The server's view of the session but its variables, read on a Django *cursor*.

    *thread_id* is the connection's id from the handshake: ``CONNECTION_ID()``
    returns ``@@pseudo_thread_id``, which a session may have changed.
    """
    found: dict[str, object] = {}
    found["database"] = _scalar(cursor, "SELECT DATABASE()")
    found["current_role"] = _scalar(cursor, "SELECT CURRENT_ROLE()")
    found["in_transaction"] = _scalar(cursor, "SELECT @@in_transaction")
    found["innodb_trx"] = _scalar(
        cursor, f"SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = {thread_id:d}"
    )
    if _has_table(cursor, "USER_VARIABLES"):
        found["user_variables"] = _rows(
            cursor, "SELECT * FROM information_schema.USER_VARIABLES ORDER BY VARIABLE_NAME"
        )
    if _has_table(cursor, "TEMPORARY_TABLES"):  # MariaDB >= 11.2: this session's own
        found["temporary_tables"] = _rows(
            cursor, "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TEMPORARY_TABLES ORDER BY 1, 2"
        )
    for name in probes.tables:
        found[f"table:{name}"] = _rows(cursor, f"SHOW CREATE TABLE `{name}`")
    for name in probes.locks:
        found[f"lock:{name}"] = _scalar(cursor, f"SELECT IS_USED_LOCK('{name}') = {thread_id:d}")
    if probes.unlocked_table is not None:
        result = _rows(cursor, f"SELECT 1 FROM `{probes.unlocked_table}` LIMIT 0")
        found["lock_tables"] = result == f"error {TABLE_NOT_LOCKED}"
    for name in probes.statements:  # EXECUTE: error 1243 when there is no such statement
        found[f"statement:{name}"] = _rows(cursor, f"EXECUTE `{name}`")
    for name in probes.handlers:  # error 1109 when no such handler is open
        found[f"handler:{name}"] = _rows(cursor, f"HANDLER `{name}` READ FIRST")
    return found


def fingerprint(wrapper: BaseDatabaseWrapper, probes: Probes | None = None) -> dict[str, object]:
    """The fingerprint of *wrapper*'s session, right after ``ensure_connection()``.

    Client side first (no query sent yet), then the server side through a
    Django cursor. Volatile variables are compared by how they behave, not by
    value: ``volatile:<name>`` is (changed between two reads, equals the
    connection's id), which a fixed ``timestamp`` or a borrowed
    ``pseudo_thread_id`` gives away.
    """
    raw = wrapper.connection
    found = client_side(raw)
    thread_id = int(raw.thread_id())
    with wrapper.cursor() as cursor:
        first = session_variables(cursor)  # the checkout's first statement: one that cannot fail
        found.update(server_side(cursor, probes or Probes(), thread_id))
        second = session_variables(cursor)
    volatile = volatile_variables(wrapper.settings_dict)
    for name, value in first.items():
        if name in volatile:
            found[f"volatile:{name}"] = (value != second.get(name), value == str(thread_id))
        else:
            found[f"var:{name}"] = value
    return found


def reference_settings(settings_dict: Mapping[str, Any]) -> dict[str, Any]:
    """*settings_dict* for the stock backend: no pool, a new connection each time."""
    settings = copy.deepcopy(dict(settings_dict))
    settings["ENGINE"] = "django.db.backends.mysql"
    settings["CONN_MAX_AGE"] = 0
    options = settings.get("OPTIONS") or {}
    settings["OPTIONS"] = {k: v for k, v in options.items() if k != "pool" and not k.startswith("pool_")}
    return settings


def _stock(settings_dict: Mapping[str, Any]) -> StockWrapper:
    return StockWrapper(reference_settings(settings_dict), f"fingerprint{next(_aliases)}")


def volatile_variables(settings_dict: Mapping[str, Any]) -> frozenset[str]:
    """Session variables whose values differ between fresh sessions or reads (cached per server)."""
    key = f"{settings_dict.get('HOST') or 'localhost'}:{settings_dict.get('PORT') or 3306}"
    if key not in _volatile:
        reads: list[dict[str, object]] = []
        for _ in range(3):
            wrapper = _stock(settings_dict)
            try:
                with wrapper.cursor() as cursor:
                    reads += [session_variables(cursor), session_variables(cursor)]
            finally:
                wrapper.close()
        names = set().union(*reads)
        _volatile[key] = frozenset(n for n in names if len({repr(r.get(n)) for r in reads}) > 1)
    return _volatile[key]


def fresh_fingerprint(settings_dict: Mapping[str, Any], probes: Probes | None = None) -> dict[str, object]:
    """The fingerprint of a stock connection opened afresh with *settings_dict* (the oracle)."""
    wrapper = _stock(settings_dict)
    try:
        wrapper.ensure_connection()
        return fingerprint(wrapper, probes)
    finally:
        wrapper.close()


def diff(a: Mapping[str, object], b: Mapping[str, object]) -> dict[str, tuple[object, object]]:
    """``{key: (a's value, b's value)}`` for every key where *a* and *b* differ (``"<absent>"``)."""
    absent = "<absent>"
    return {
        key: (a.get(key, absent), b.get(key, absent))
        for key in sorted(set(a) | set(b))
        if a.get(key, absent) != b.get(key, absent)
    }


def explain(differences: Mapping[str, tuple[object, object]], first: str = "reused", second: str = "fresh") -> str:
    """*differences* (from :func:`diff`) one per line, for an assertion message."""
    lines = [f"{len(differences)} difference(s), {first} vs {second}:"]
    lines += [f"  {key}: {a!r} vs {b!r}" for key, (a, b) in differences.items()]
    return "\n".join(lines)
