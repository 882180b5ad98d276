"""``QuerySet.cancellable()``: the QuerySet side of query cancellation.

:class:`CancellableQuerySetMixin` runs each evaluation of a queryset inside a
:func:`~django_mysql_pooled.cancel.scope.cancel_scope`, and its async methods kill
the running query when the awaiting task is cancelled.
:func:`patch_queryset` adds ``cancellable()`` to every QuerySet and Manager
(called from ``AppConfig.ready()`` unless
``settings.DJANGO_MYSQL_POOLED_PATCH_QUERYSET = False``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.manager import BaseManager

from django_mysql_pooled.cancel.scope import CancelToken, activate, cancel_scope, open_scope, task_token

__all__ = ["ASYNC_EVALUATIONS", "SYNC_EVALUATIONS", "CancellableQuerySet", "CancellableQuerySetMixin", "patch_queryset"]

_M = TypeVar("_M", bound=Model)
_V = TypeVar("_V")
_Q = TypeVar("_Q", bound="CancellableQuerySetMixin[Any]")

#: Django's QuerySet methods that run SQL (besides iteration): each call is one
#: cancellable evaluation, every statement it runs included (``get_or_create()``'s
#: ``create()``, ``bulk_update()``'s batches, ``delete()``'s collection...).
SYNC_EVALUATIONS = (
    "aggregate",
    "bulk_create",
    "bulk_update",
    "contains",
    "count",
    "create",
    "delete",
    "earliest",
    "exists",
    "explain",
    "first",
    "get",
    "get_or_create",
    "in_bulk",
    "last",
    "latest",
    "update",
    "update_or_create",
)
#: Django's async QuerySet methods, each awaiting its sync twin in a thread
#: (``sync_to_async``): cancelling the awaiting task kills the query. ``aiterator()``
#: and ``async for`` are defined in the class. A test checks that this covers
#: every async method of the installed Django.
ASYNC_EVALUATIONS = tuple(f"a{name}" for name in SYNC_EVALUATIONS)

#: The spec whose evaluation runs now in this context: its nested calls (``get()``
#: inside ``get_or_create()``) belong to the same evaluation.
_evaluating: contextvars.ContextVar[_Spec | None] = contextvars.ContextVar(
    "django_mysql_pooled_evaluating", default=None
)


class _Spec:
    """What ``cancellable()`` was given; shared by the clones (and copies) of one queryset.

    Pickled without its token: a token belongs to the threads of one process.
    """

    __slots__ = ("timeout", "token")

    def __init__(self, timeout: float | None, token: CancelToken | None) -> None:
        self.timeout = timeout
        self.token = token

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Spec, (self.timeout, None))

    def __deepcopy__(self, memo: dict[int, Any]) -> _Spec:
        return self


async def _kill_on_task_cancel(awaitable: Awaitable[_V], token: CancelToken | None = None) -> _V:
    """Await *awaitable* (which runs sync ORM code in a thread); if this task is
    cancelled, cancel a token the thread's scope listens to, then re-raise."""
    token = token or CancelToken()
    reset = task_token.set(token)
    try:
        return await awaitable
    except asyncio.CancelledError:
        token.cancel()
        raise
    finally:
        task_token.reset(reset)


def _next_slice(rows: Iterator[_V], size: int) -> list[_V]:
    return list(itertools.islice(rows, size))


class CancellableQuerySetMixin(QuerySet[_M]):
    """Adds :meth:`cancellable` to a QuerySet class (for typed code and custom querysets)."""

    _cancel_spec: _Spec | None = None

    def cancellable(self: _Q, timeout: float | None = None, token: CancelToken | None = None) -> _Q:
        """Return a clone whose evaluations can be cancelled on the server.

        :param timeout: seconds (float) for the whole of each evaluation (every
            statement it runs, prefetches included); ``None``: no deadline.
        :param token: a :class:`~django_mysql_pooled.cancel.scope.CancelToken` whose
            ``cancel()`` kills the running query.
        :raises ValueError: *timeout* is not a positive number.

        Evaluating the clone raises :exc:`~django_mysql_pooled.errors.QueryCancelled`
        (a :class:`django.db.OperationalError`) when the query is killed; its
        async methods also kill it when the awaiting task is cancelled.
        """
        if timeout is not None and not timeout > 0:
            raise ValueError(f"cancellable(timeout={timeout!r}): the timeout must be a positive number of seconds")
        clone: _Q = cast(Any, self)._chain()
        clone._cancel_spec = _Spec(timeout, token)
        return clone

    def _clone(self) -> Any:
        clone = super()._clone()  # type: ignore[misc]
        clone._cancel_spec = self._cancel_spec
        return clone

    @contextlib.contextmanager
    def _scoped(self) -> Iterator[None]:
        """Run the block as one evaluation (or as part of the one running now)."""
        spec = self._cancel_spec
        if spec is None or _evaluating.get() is spec:
            yield
            return
        reset = _evaluating.set(spec)
        try:
            with cancel_scope(connections[self.db], timeout=spec.timeout, token=spec.token):
                yield
        finally:
            _evaluating.reset(reset)

    async def _async(self, awaitable: Awaitable[_V]) -> _V:
        if self._cancel_spec is None:
            return await awaitable
        return await _kill_on_task_cancel(awaitable)

    # -- iteration ------------------------------------------------------------------

    def _fetch_all(self) -> None:
        qs = cast(Any, self)
        if qs._result_cache is None or (qs._prefetch_related_lookups and not qs._prefetch_done):
            with self._scoped():
                super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Iterator[_M]:
        rows = super().iterator(chunk_size)  # validates chunk_size now, as Django does
        if self._cancel_spec is None:
            return rows
        return self._stepped(rows, None)

    def _stepped(self, rows: Iterator[_M], token: CancelToken | None) -> Iterator[_M]:
        """Yield *rows* as one evaluation whose scope is active only while a row is fetched.

        The statements the caller runs between two rows are not part of it,
        and no execute wrapper stays installed across a ``yield``.
        """
        spec = self._cancel_spec
        assert spec is not None
        scope = open_scope(spec.timeout, (spec.token, token or task_token.get()))
        try:
            while True:
                with activate(connections[self.db], scope):  # this thread's connection
                    row = next(rows, _END)
                if row is _END:
                    return
                yield cast(_M, row)
        finally:
            cast(Any, rows).close()
            scope.close()

    async def aiterator(self, chunk_size: int = 2000) -> AsyncIterator[_M]:
        """Django's ``aiterator()``, as one evaluation: the deadline covers it, and
        cancelling the consuming task kills the running query."""
        if self._cancel_spec is None:
            async for item in super().aiterator(chunk_size):
                yield item
            return
        token = CancelToken()
        rows = self._stepped(super().iterator(chunk_size), token)
        try:
            while True:
                chunk = await _kill_on_task_cancel(sync_to_async(_next_slice)(rows, chunk_size), token)
                for item in chunk:
                    yield item
                if len(chunk) < chunk_size:
                    return
        finally:
            with contextlib.suppress(ValueError):  # still running in its thread: closed when it ends
                cast(Any, rows).close()

    def __aiter__(self) -> AsyncIterator[_M]:
        async def results() -> AsyncIterator[_M]:
            await self._async(sync_to_async(self._fetch_all)())
            for item in self._result_cache or ():
                yield item

        return results()

    # -- pickling ---------------------------------------------------------------------

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The classes patch_queryset() builds are not importable by name: rebuild them.
        base = _bases.get(type(self))
        if base is None:
            return super().__reduce_ex__(protocol)
        return (_rebuild, (base,), self.__getstate__())


_END: Any = object()


def _evaluation(name: str) -> Callable[..., Any]:
    def method(self: CancellableQuerySetMixin[Any], *args: Any, **kwargs: Any) -> Any:
        with self._scoped():
            return getattr(super(CancellableQuerySetMixin, self), name)(*args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Django's ``{name}()``, as one cancellable evaluation."
    return method


def _async_evaluation(name: str) -> Callable[..., Any]:
    async def method(self: CancellableQuerySetMixin[Any], *args: Any, **kwargs: Any) -> Any:
        return await self._async(getattr(super(CancellableQuerySetMixin, self), name)(*args, **kwargs))

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"Django's ``{name}()``; cancelling the awaiting task kills its query."
    return method


for _name in SYNC_EVALUATIONS:
    setattr(CancellableQuerySetMixin, _name, _evaluation(_name))
for _name in ASYNC_EVALUATIONS:
    setattr(CancellableQuerySetMixin, _name, _async_evaluation(_name))


class CancellableQuerySet(CancellableQuerySetMixin[_M]):
    """A QuerySet with :meth:`~CancellableQuerySetMixin.cancellable`
    (``objects = CancellableQuerySet.as_manager()``)."""


_classes: dict[type[QuerySet[Any]], type[QuerySet[Any]]] = {}
#: The class each built class was made from (to pickle its instances).
_bases: dict[type[QuerySet[Any]], type[QuerySet[Any]]] = {}


def _cancellable_class(cls: type[QuerySet[Any]]) -> type[QuerySet[Any]]:
    """*cls* with the mixin in front (built once per class)."""
    if issubclass(cls, CancellableQuerySetMixin):
        return cls
    made = _classes.get(cls)
    if made is None:
        made = type(f"Cancellable{cls.__name__}", (CancellableQuerySetMixin, cls), {"__module__": cls.__module__})
        made = _classes.setdefault(cls, made)
        _bases[made] = cls
    return made


def _rebuild(base: type[QuerySet[Any]]) -> QuerySet[Any]:
    """An empty instance of *base*'s cancellable class, for pickle to fill with its state."""
    cls = _cancellable_class(base)
    return cls.__new__(cls)


def _queryset_cancellable(self: QuerySet[Any], timeout: float | None = None, token: CancelToken | None = None) -> Any:
    clone = cast(Any, self)._chain()
    clone.__class__ = _cancellable_class(type(self))
    return CancellableQuerySetMixin.cancellable(clone, timeout, token)


def _manager_cancellable(self: BaseManager[Any], timeout: float | None = None, token: CancelToken | None = None) -> Any:
    return self.get_queryset().cancellable(timeout, token)  # type: ignore[attr-defined]


def patch_queryset() -> None:
    """Add ``cancellable()`` to :class:`~django.db.models.QuerySet` and every Manager (idempotent).

    The method swaps the clone's class for a subclass with
    :class:`CancellableQuerySetMixin` in front; nothing else of Django changes.
    """
    _queryset_cancellable.__doc__ = CancellableQuerySetMixin.cancellable.__doc__
    _manager_cancellable.__doc__ = CancellableQuerySetMixin.cancellable.__doc__
    if "cancellable" not in QuerySet.__dict__:
        QuerySet.cancellable = _queryset_cancellable  # type: ignore[attr-defined]
    if "cancellable" not in BaseManager.__dict__:
        BaseManager.cancellable = _manager_cancellable  # type: ignore[attr-defined]
