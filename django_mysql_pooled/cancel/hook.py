"""The execute wrapper that runs each statement of the active cancel scopes on one connection.

For each statement: refuse it when a scope's deadline passed or its token was
cancelled; record it as the :class:`~.execution.Execution` the watchdog may
kill; prefix the server's own time limit; and decide what the caller gets:

* the server reported the interruption (1317 after our kill, 1969 / 3024 the
  server's limit): :exc:`~.errors.QueryCancelled`;
* a **read** that returned after its kill or its deadline:
  :exc:`~.errors.QueryCancelled`, since its value may be wrong (a killed
  ``BENCHMARK()`` returns 0 on MariaDB);
* a **write** (anything else) that the server completed: its result, even if
  a kill arrived after the server's OK (counted in ``kills_late``): it was
  applied, and in autocommit mode committed, so raising would make a caller's
  retry apply it twice.

A :exc:`~.errors.QueryCancelled` raised inside ``atomic()`` marks the block
for rollback (``KILL QUERY`` ends the statement, not the transaction:
https://mariadb.com/kb/en/kill/), as Django does for an error leaving an
inner block.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from django_mysql_pooled import identity
from django_mysql_pooled.cancel import execution as ex
from django_mysql_pooled.cancel.errors import QueryCancelled
from django_mysql_pooled.cancel.execution import Execution
from django_mysql_pooled.cancel.killer import Killer
from django_mysql_pooled.pool import stats

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    from django_mysql_pooled.cancel.scope import Scope

__all__ = ["SERVER_LIMIT_SLACK", "Hook"]

logger = logging.getLogger(__name__)

# Server errors meaning "the statement was stopped".
_INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED: KILL QUERY (ours or someone else's)
_SERVER_TIMEOUT = (
    1969,  # ER_STATEMENT_TIMEOUT: MariaDB max_statement_time exceeded
    3024,  # ER_QUERY_TIMEOUT: MySQL MAX_EXECUTION_TIME exceeded
)
#: Seconds the server's own time limit runs past the deadline. At the same deadline the
#: server's timer and the watchdog's kill raced, and a timer expiring just as its statement
#: ended could interrupt the next statement of the session instead (error 1969 on a statement
#: never cancelled: seen in CI about once in a few thousand cancellations under CPU load).
#: The likely mechanism (read in MariaDB's source, not reproduced at will): its timer thread
#: marks the timer expired, then flags the session in a separate step; a statement ending
#: between the two does not cancel the timer, and the flag lands on whatever runs next.
SERVER_LIMIT_SLACK = 0.5
_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)
#: Statements that only read: a kill or deadline makes their value suspect.
_READ = re.compile(r"[\s(]*(SELECT|WITH|VALUES|TABLE|SHOW|EXPLAIN|DESCRIBE|DESC)\b", re.IGNORECASE)


#: ``host_killer(wrapper, (host, port))``: the killer of one host of a pool with several hosts.
HostKiller = Callable[["BaseDatabaseWrapper", tuple[str, int]], Killer]


class Hook:
    """The execute wrapper of one connection while scopes are active on it (one thread).

    :param killer: the killer of the wrapper's server (its connection parameters').
    :param host_killer: the killer of a connection whose host was recorded
        (:func:`~django_mysql_pooled.identity.address_of`: a pool with several hosts).
    """

    def __init__(self, connection: BaseDatabaseWrapper, killer: Killer, pool: Any, host_killer: HostKiller) -> None:
        self.connection = connection
        self.scopes: list[Scope] = []
        self.killer = killer
        self.pool = pool
        self._host_killer = host_killer
        self.is_mariadb: bool | None = None

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        raw = self.connection.connection
        self._learn_server(raw)
        execution = Execution(raw, self.killer_of(raw), self.pool)
        with ex.lock:
            refused = self._refused()
            if refused is None:
                for scope in self.scopes:
                    scope.running = execution
        if refused is not None:
            raise self._cancelled(refused.error(execution.connection_id))
        sent = sql if many else self._with_server_limit(raw, sql)
        try:
            result = execute(sent, params, many, context)
        except BaseException as exc:
            cancelled = self._translate(exc, self._finish(execution), execution.connection_id)
            if cancelled is None:
                raise
            raise self._cancelled(cancelled) from exc
        return self._completed(sql, result, self._finish(execution), execution)

    def killer_of(self, raw: Any) -> Killer:
        """The killer of the server *raw* runs on: with several hosts, the one it was opened to
        (opened now if no evaluation used it yet: the wrapper's connection was not open at
        :meth:`ready_killer`)."""
        address = identity.address_of(raw)
        if address is None:
            return self.killer
        killer = self._host_killer(self.connection, address)
        if not killer.used:
            killer.keep_ready()
        return killer

    def ready_killer(self) -> None:
        """Have the killer of this evaluation's server opened (a cancellable evaluation starts).

        With several hosts and no connection yet, the host is not known: the
        first statement opens its host's killer (:meth:`killer_of`).
        """
        raw = self.connection.connection
        if raw is not None:
            self.killer_of(raw).keep_ready()
        elif getattr(self.pool, "hosts", None) is None:
            self.killer.keep_ready()

    def _learn_server(self, raw: Any) -> None:
        """Record the server's identity of a connection that has none coming (the stock backend):
        one query, once per server connection."""
        if identity.identity_of(raw) is None and not identity.is_pending(raw):
            with self.connection.wrap_database_errors:
                identity.read(raw)

    def _refused(self) -> Scope | None:
        """The scope that forbids starting a statement now (called under the lock)."""
        now = time.monotonic()
        for scope in self.scopes:
            if scope.reason is None and scope.deadline is not None and now >= scope.deadline:
                scope.reason = "timeout"
            if scope.reason is not None:
                return scope
        return None

    def _finish(self, execution: Execution) -> Scope | None:
        """Wait for an in-flight kill; return the scope whose kill landed, if one did."""
        killed = execution.finish()
        if execution.abandoned:
            self._never_reuse()
        with ex.lock:
            for scope in self.scopes:
                scope.running = None
        if not killed:
            return None
        return next((scope for scope in self.scopes if scope.reason is not None), self.scopes[0])

    def _never_reuse(self) -> None:
        """A kill may still reach this session: it must serve no one else's statement.

        Pooled: closed at checkin (a new connection gets a new id, so the
        late ``KILL QUERY`` finds no such thread). Stock: closed at the end of
        the request (``close_at``), before a persistent connection is reused.
        """
        if getattr(self.connection, "_pool_of_connection", None) is not None:
            self.connection.setup_failed()  # type: ignore[attr-defined]
        else:  # the stock backend, or ours without a pool (or an unpooled copy)
            self.connection.close_at = time.monotonic()

    def _completed(self, sql: str, result: Any, killed: Scope | None, execution: Execution) -> Any:
        """The result of a statement the server completed, or the reason a read must not return."""
        if _READ.match(sql):
            if killed is None:
                with ex.lock:
                    killed = self._refused()  # the server's limit may end a read silently too
            if killed is not None:  # completed, but its value may be wrong (a killed BENCHMARK() is 0)
                raise self._cancelled(killed.error(execution.connection_id, completed=True))
        elif killed is not None and not execution.unanswered:  # (unanswered: it has not landed, may later)
            logger.info(
                "KILL QUERY %s landed after the server completed the statement: its result is kept",
                execution.connection_id,
            )
            self._count(stats.KILLS_LATE)
        return result

    def _translate(self, exc: BaseException, killed: Scope | None, connection_id: int) -> QueryCancelled | None:
        if not isinstance(exc, DatabaseError):
            return None
        errno = exc.args[0] if exc.args else None
        if killed is not None and errno == _INTERRUPTED:
            return killed.error(connection_id, errno)
        if errno in _SERVER_TIMEOUT:
            scope = min(self.scopes, key=lambda s: s.deadline if s.deadline is not None else float("inf"))
            with ex.lock:
                scope.reason = scope.reason or "timeout"
            return scope.error(connection_id, errno)
        return None

    def _with_server_limit(self, raw: Any, sql: str) -> str:
        """Prefix *sql* with the server's own limit: the time remaining plus :data:`SERVER_LIMIT_SLACK`
        (MariaDB: any statement, https://mariadb.com/kb/en/max_statement_time/; MySQL: SELECT only,
        https://dev.mysql.com/doc/refman/8.0/en/optimizer-hints.html#optimizer-hints-execution-time).

        The limit is a backstop for a kill that cannot be sent; at the deadline itself the
        watchdog's ``KILL QUERY`` stops the statement. A limit that expired as its statement
        ended could interrupt the session's next statement (see :data:`SERVER_LIMIT_SLACK`).
        """
        deadlines = [scope.deadline for scope in self.scopes if scope.deadline is not None]
        if not deadlines:
            return sql
        remaining = max(min(deadlines) - time.monotonic(), 0.0) + SERVER_LIMIT_SLACK
        if self.is_mariadb is None:
            self.is_mariadb = "mariadb" in raw.get_server_info().lower()
        if self.is_mariadb:
            return f"SET STATEMENT max_statement_time={remaining:.3f} FOR {sql}"
        match = _SELECT.match(sql)
        if match is None:
            return sql
        return f"{sql[: match.end()]} /*+ MAX_EXECUTION_TIME({max(round(remaining * 1000), 1)}) */{sql[match.end() :]}"

    def _cancelled(self, error: QueryCancelled) -> QueryCancelled:
        """Count *error* and mark an enclosing ``atomic()`` block for rollback."""
        self._count(stats.QUERIES_CANCELLED)
        if self.connection.in_atomic_block:
            self.connection.set_rollback(True)
        return error

    def _count(self, key: str) -> None:
        if self.pool is not None:
            self.pool.count(key)
