"""Server-side query cancellation: deadlines and tokens that end in ``KILL QUERY``.

:func:`cancel_scope` installs a Django execute wrapper
(``connection.execute_wrapper``) for the duration of one evaluation. Each
statement run under it is recorded as an :class:`_Execution`; the process-wide
watchdog thread (:mod:`django_mysql_pooled.cancel.watchdog`) kills it when the scope's
deadline passes or one of its tokens is cancelled.

Race safety (the problem of go-sql-driver/mysql#496: a late ``KILL QUERY``
hitting the *next* statement): the executing thread and the killer agree under
one lock on which statement runs. The killer marks the execution ``KILLING``
before it sends the kill and ``KILLED`` once the server answered; the
executing thread, when its statement returns, waits while it is ``KILLING``
and only then starts anything else on that connection. A kill requested after
the statement was marked done does nothing.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from django_mysql_pooled.cancel.errors import CancelReason, QueryCancelled
from django_mysql_pooled.cancel.killer import Killer, killer_for
from django_mysql_pooled.cancel.watchdog import watchdog
from django_mysql_pooled.pool import stats

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["CancelToken", "cancel_scope"]

# Server errors meaning "the statement was stopped".
_INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED: KILL QUERY (ours or someone else's)
_SERVER_TIMEOUT = (
    1969,  # ER_STATEMENT_TIMEOUT: MariaDB max_statement_time exceeded
    3024,  # ER_QUERY_TIMEOUT: MySQL MAX_EXECUTION_TIME exceeded
)
_SELECT = re.compile(r"\s*SELECT\b", re.IGNORECASE)

#: The one lock (and condition) guarding every token, scope and execution state.
_cond = threading.Condition()
#: Tests switch this off to check that the server-side limit works alone.
_client_kill_enabled = True
#: A token the async queryset methods add to the scopes their sync part opens.
task_token: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "django_mysql_pooled_task_token", default=None
)


class CancelToken:
    """Cancels the queries of every ``cancellable(token=...)`` evaluation using it.

    One token may serve several querysets and threads. :meth:`cancel` may be
    called from any thread (or the event loop): it returns at once, and the
    watchdog thread sends ``KILL QUERY`` to each running statement. A
    cancelled token stays cancelled: evaluations started later raise
    :class:`~django_mysql_pooled.QueryCancelled` before sending anything.
    """

    def __init__(self) -> None:
        self._cancelled = False
        self._scopes: set[_Scope] = set()

    def __repr__(self) -> str:
        return f"<CancelToken cancelled={self._cancelled} scopes={len(self._scopes)}>"

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Cancel: kill the running statements of the evaluations using this token (idempotent)."""
        with _cond:
            if self._cancelled:
                return
            self._cancelled = True
            scopes = list(self._scopes)
        for scope in scopes:
            watchdog().kill_soon(scope, "cancelled", kill)


class _State(enum.Enum):
    RUNNING = "running"
    KILLING = "killing"
    KILLED = "killed"
    KILL_FAILED = "kill failed"
    DONE = "done"


class _Execution:
    """One statement on one server connection."""

    __slots__ = ("connection_id", "killer", "pool", "state")

    def __init__(self, connection_id: int, killer: Killer, pool: Any) -> None:
        self.connection_id = connection_id
        self.killer = killer
        self.pool = pool
        self.state = _State.RUNNING


class _Scope:
    """One cancellable evaluation: a deadline, tokens, the statement running now."""

    def __init__(self, timeout: float | None, tokens: list[CancelToken]) -> None:
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.timeout = timeout
        self.tokens = tokens
        self.reason: CancelReason | None = None
        self.running: _Execution | None = None
        self.closed = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def error(self, connection_id: int | None, errno: int = _INTERRUPTED) -> QueryCancelled:
        reason = self.reason or "timeout"
        if reason == "timeout":
            why = f"its deadline passed: cancellable(timeout={self.timeout})"
        else:
            why = "its CancelToken was cancelled"
        return QueryCancelled(
            f"Query on connection {connection_id} cancelled after {self.elapsed():.3f} s: {why}",
            reason=reason,
            connection_id=connection_id,
            elapsed=self.elapsed(),
            errno=errno,
        )


def kill(scope: _Scope, reason: CancelReason) -> None:
    """Mark *scope* cancelled and kill its running statement, if any (watchdog thread)."""
    with _cond:
        if scope.reason is None:
            scope.reason = reason
        execution = scope.running
        if execution is None or execution.state is not _State.RUNNING or not _client_kill_enabled:
            return
        execution.state = _State.KILLING
    sent = False
    try:
        sent = execution.killer.kill(execution.connection_id)
    finally:
        with _cond:
            execution.state = _State.KILLED if sent else _State.KILL_FAILED
            _cond.notify_all()
    if sent and execution.pool is not None:
        execution.pool.count(stats.KILLS_SENT)


class _Hook:
    """The execute wrapper of one connection while scopes are active on it (one thread)."""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection
        self.scopes: list[_Scope] = []
        self.killer = killer_for(connection.get_connection_params())
        self.pool: Any = getattr(connection, "pool", None)
        self.is_mariadb: bool | None = None

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        raw = self.connection.connection
        connection_id = int(raw.thread_id())
        execution = _Execution(connection_id, self.killer, self.pool)
        with _cond:
            refused = self._refused()
            if refused is None:
                for scope in self.scopes:
                    scope.running = execution
        if refused is not None:
            raise self._count(refused.error(connection_id))
        if not many:
            sql = self._with_server_limit(raw, sql)
        try:
            result = execute(sql, params, many, context)
        except BaseException as exc:
            cancelled = self._translate(exc, self._finish(execution), connection_id)
            if cancelled is None:
                raise
            raise self._count(cancelled) from exc
        killed = self._finish(execution)
        if killed is None:
            # The server's limit may end a statement silently too (BENCHMARK() returns 0).
            with _cond:
                killed = self._refused()
        if killed is not None:  # killed, even though the server returned a result
            raise self._count(killed.error(connection_id))
        return result

    def _refused(self) -> _Scope | None:
        """The scope that forbids starting a statement now (called under the lock)."""
        now = time.monotonic()
        for scope in self.scopes:
            if scope.reason is None and scope.deadline is not None and now >= scope.deadline:
                scope.reason = "timeout"
            if scope.reason is not None:
                return scope
        return None

    def _finish(self, execution: _Execution) -> _Scope | None:
        """Wait for an in-flight kill; return the scope whose kill landed, if one did."""
        with _cond:
            while execution.state is _State.KILLING:
                _cond.wait()
            killed = execution.state is _State.KILLED
            execution.state = _State.DONE
            for scope in self.scopes:
                scope.running = None
        if not killed:
            return None
        return next((scope for scope in self.scopes if scope.reason is not None), self.scopes[0])

    def _translate(self, exc: BaseException, killed: _Scope | None, connection_id: int) -> QueryCancelled | None:
        if not isinstance(exc, DatabaseError):
            return None
        errno = exc.args[0] if exc.args else None
        if killed is not None:
            return killed.error(connection_id, errno if isinstance(errno, int) else _INTERRUPTED)
        if errno in _SERVER_TIMEOUT:
            scope = min(self.scopes, key=lambda s: s.deadline if s.deadline is not None else float("inf"))
            with _cond:
                scope.reason = scope.reason or "timeout"
            return scope.error(connection_id, errno)
        return None

    def _with_server_limit(self, raw: Any, sql: str) -> str:
        """Prefix *sql* with the server's own limit for the time remaining (MariaDB: any
        statement, https://mariadb.com/kb/en/max_statement_time/; MySQL: SELECT only,
        https://dev.mysql.com/doc/refman/8.0/en/optimizer-hints.html#optimizer-hints-execution-time)."""
        deadlines = [scope.deadline for scope in self.scopes if scope.deadline is not None]
        if not deadlines:
            return sql
        remaining = max(min(deadlines) - time.monotonic(), 0.001)
        if self.is_mariadb is None:
            self.is_mariadb = "mariadb" in raw.get_server_info().lower()
        if self.is_mariadb:
            return f"SET STATEMENT max_statement_time={remaining:.3f} FOR {sql}"
        match = _SELECT.match(sql)
        if match is None:
            return sql
        return f"{sql[: match.end()]} /*+ MAX_EXECUTION_TIME({max(round(remaining * 1000), 1)}) */{sql[match.end() :]}"

    def _count(self, error: QueryCancelled) -> QueryCancelled:
        if self.pool is not None:
            self.pool.count(stats.QUERIES_CANCELLED)
        return error


_local = threading.local()


def _hooks() -> dict[int, _Hook]:
    hooks: dict[int, _Hook] | None = getattr(_local, "hooks", None)
    if hooks is None:
        hooks = _local.hooks = {}
    return hooks


@contextlib.contextmanager
def cancel_scope(
    connection: BaseDatabaseWrapper, *, timeout: float | None = None, token: CancelToken | None = None
) -> Iterator[None]:
    """Run the block as one cancellable evaluation on *connection* (a MySQL ``DatabaseWrapper``).

    Every statement the block runs on *connection* shares one deadline,
    *timeout* seconds (float) from now, and is killed with ``KILL QUERY`` when
    the deadline passes or *token* is cancelled. Nested scopes on the same
    connection each keep their own deadline and tokens.

    :raises QueryCancelled: from the statement that was killed or refused.
    """
    tokens = [t for t in (token, task_token.get()) if t is not None]
    scope = _Scope(timeout, tokens)
    hooks = _hooks()
    hook = hooks.get(id(connection))
    if hook is None:
        hook = hooks[id(connection)] = _Hook(connection)
        installed: contextlib.AbstractContextManager[None] = connection.execute_wrapper(hook)
    else:
        installed = contextlib.nullcontext()
    with _cond:
        for t in tokens:
            t._scopes.add(scope)
            if t._cancelled:
                scope.reason = "cancelled"
    hook.scopes.append(scope)
    try:
        if scope.deadline is not None:
            watchdog().schedule(scope, kill)
        with installed:
            yield
    finally:
        hook.scopes.remove(scope)
        if not hook.scopes:
            del hooks[id(connection)]
        with _cond:
            scope.closed = True
            for t in tokens:
                t._scopes.discard(scope)
