"""Server-side query cancellation: deadlines and tokens that end in ``KILL QUERY``.

A :class:`Scope` is one cancellable evaluation: a deadline, tokens, the
statement running now. It is *opened* once (:func:`open_scope`, which starts
the deadline) and *activated* on a connection only while its own statements
run (:func:`activate`): only then is its Django execute wrapper (a
:class:`~.hook.Hook`) in ``connection.execute_wrappers``, so statements a
caller runs between two steps of an iterator never carry its deadline. The
wrapper is added and removed by identity, within one frame, never across a
generator boundary: Django's ``connection.execute_wrapper()`` removes the
*last* wrapper on exit, not its own.

Each statement run under an active scope is recorded as an
:class:`~.execution.Execution`; the process-wide watchdog thread
(:mod:`~.watchdog`) kills it when the scope's deadline passes or one of its
tokens is cancelled, by handing it to the :class:`~.killer.Killer` of its
server (:mod:`~.execution` describes the race protocol): the wrapper's one
server, or in a pool with several hosts the host its connection was opened to
(chosen per statement: a wrapper's next checkout may be on another host).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from django_mysql_pooled.cancel import execution as ex
from django_mysql_pooled.cancel.errors import CancelReason, QueryCancelled
from django_mysql_pooled.cancel.execution import Execution, State
from django_mysql_pooled.cancel.hook import Hook
from django_mysql_pooled.cancel.killer import Killer
from django_mysql_pooled.cancel.killers import host_killer, killer_for
from django_mysql_pooled.cancel.watchdog import watchdog

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["CancelToken", "Scope", "activate", "cancel_scope", "open_scope"]

_INTERRUPTED = 1317  # ER_QUERY_INTERRUPTED
#: Tests switch this off to check that the server-side limit works alone.
_client_kill_enabled = True
#: A token the async queryset methods add to the scopes their sync part opens.
task_token: contextvars.ContextVar[CancelToken | None] = contextvars.ContextVar(
    "django_mysql_pooled_task_token", default=None
)
#: The execute wrapper's class (tests replace its server-limit method).
_Hook = Hook


class CancelToken:
    """Cancels the queries of every ``cancellable(token=...)`` evaluation using it.

    One token may serve several querysets and threads. :meth:`cancel` may be
    called from any thread (or the event loop): it returns at once, and the
    killer threads send ``KILL QUERY`` to each running statement. A cancelled
    token stays cancelled: evaluations started later raise
    :class:`~django_mysql_pooled.QueryCancelled` before sending anything.
    Copies of a queryset share its token; a pickled queryset drops it.
    """

    def __init__(self) -> None:
        self._cancelled = False
        self._scopes: set[Scope] = set()

    def __repr__(self) -> str:
        return f"<CancelToken cancelled={self._cancelled} scopes={len(self._scopes)}>"

    def __copy__(self) -> CancelToken:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> CancelToken:
        return self

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancelled

    def cancel(self) -> None:
        """Cancel: kill the running statements of the evaluations using this token (idempotent)."""
        with ex.lock:
            if self._cancelled:
                return
            self._cancelled = True
            scopes = list(self._scopes)
        for scope in scopes:
            watchdog().kill_soon(scope, "cancelled", kill)


class Scope:
    """One cancellable evaluation: a deadline, tokens, the statement running now."""

    def __init__(self, timeout: float | None, tokens: list[CancelToken]) -> None:
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.timeout = timeout
        self.tokens = tokens
        self.reason: CancelReason | None = None
        self.running: Execution | None = None
        self.closed = False
        self.activated = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def error(self, connection_id: int | None, errno: int = _INTERRUPTED, *, completed: bool = False) -> QueryCancelled:
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
            errno=None if completed else errno,
            completed=completed,
        )

    def close(self) -> None:
        """End the evaluation: its deadline and tokens kill nothing any more (idempotent)."""
        with ex.lock:
            self.closed = True
            for token in self.tokens:
                token._scopes.discard(self)


def kill(scope: Scope, reason: CancelReason) -> None:
    """Mark *scope* cancelled and have its running statement killed, if any (watchdog thread;
    never blocks on the network: the killer's sender thread sends)."""
    with ex.lock:
        if scope.reason is None:
            scope.reason = reason
        execution = scope.running
        if execution is None or execution.state is not State.RUNNING or not _client_kill_enabled:
            return
    execution.request_kill()


def open_scope(timeout: float | None, tokens: Iterable[CancelToken | None]) -> Scope:
    """Start one evaluation: its deadline, *timeout* seconds from now, and its *tokens*.

    Close it with :meth:`Scope.close`; run its statements inside :func:`activate`.
    """
    scope = Scope(timeout, [token for token in tokens if token is not None])
    with ex.lock:
        for token in scope.tokens:
            token._scopes.add(scope)
            if token._cancelled:
                scope.reason = "cancelled"
    if scope.deadline is not None:
        watchdog().schedule(scope, kill)
    return scope


_local = threading.local()


def _hooks() -> dict[int, Hook]:
    hooks: dict[int, Hook] | None = getattr(_local, "hooks", None)
    if hooks is None:
        hooks = _local.hooks = {}
    return hooks


def _killer(connection: BaseDatabaseWrapper) -> Killer:
    killer: Killer | None = getattr(connection, "_dmp_killer", None)
    if killer is None:
        # Rotating credentials: the pool's login, duck-typed (cancel/ does not import session/).
        login = getattr(getattr(connection, "pool", None), "killer_login", None)
        killer = killer_for(connection.get_connection_params(), login)
        connection._dmp_killer = killer  # type: ignore[attr-defined]
    return killer


def _host_killer(connection: BaseDatabaseWrapper, address: tuple[str, int]) -> Killer:
    """The killer of the host at *address*, in a pool with several hosts (kept per wrapper and host)."""
    killers: dict[tuple[str, int], Killer] | None = getattr(connection, "_dmp_host_killers", None)
    if killers is None:
        killers = connection._dmp_host_killers = {}  # type: ignore[attr-defined]
    killer = killers.get(address)
    if killer is None:
        login = getattr(getattr(connection, "pool", None), "killer_login", None)
        killer = killers[address] = host_killer(connection.get_connection_params(), address, login)
    return killer


@contextlib.contextmanager
def activate(connection: BaseDatabaseWrapper, scope: Scope) -> Iterator[None]:
    """Cover the statements the block runs on *connection* (in this thread) with *scope*.

    Enter and leave it in the same frame (never across a ``yield``).
    """
    hooks = _hooks()
    hook = hooks.get(id(connection))
    if hook is None:
        pool = getattr(connection, "pool", None)
        hook = hooks[id(connection)] = _Hook(connection, _killer(connection), pool, _host_killer)
        connection.execute_wrappers.append(hook)
    if not scope.activated:
        scope.activated = True
        hook.ready_killer()  # opened now, not at the first kill; a pool then keeps it ready
    hook.scopes.append(scope)
    try:
        yield
    finally:
        hook.scopes.remove(scope)
        if not hook.scopes:
            del hooks[id(connection)]
            with contextlib.suppress(ValueError):  # already removed by someone else
                connection.execute_wrappers.remove(hook)


@contextlib.contextmanager
def cancel_scope(
    connection: BaseDatabaseWrapper, *, timeout: float | None = None, token: CancelToken | None = None
) -> Iterator[None]:
    """Run the block as one cancellable evaluation on *connection* (a MySQL ``DatabaseWrapper``).

    Every statement the block runs on *connection* in this thread shares one
    deadline, *timeout* seconds (float) from now, and is killed with ``KILL
    QUERY`` when the deadline passes or *token* is cancelled. Nested scopes on
    the same connection each keep their own deadline and tokens.

    :raises QueryCancelled: from the statement that was killed or refused.
    """
    scope = open_scope(timeout, (token, task_token.get()))
    try:
        with activate(connection, scope):
            yield
    finally:
        scope.close()
