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
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, TypeVar, cast

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.manager import BaseManager

from django_mysql_pooled.cancel.scope import CancelToken, cancel_scope, task_token

__all__ = ["CancellableQuerySet", "CancellableQuerySetMixin", "patch_queryset"]

_M = TypeVar("_M", bound=Model)
_V = TypeVar("_V")
_Q = TypeVar("_Q", bound="CancellableQuerySetMixin[Any]")


class _Spec:
    """What ``cancellable()`` was given; shared by the clones of one queryset."""

    __slots__ = ("timeout", "token")

    def __init__(self, timeout: float | None, token: CancelToken | None) -> None:
        self.timeout = timeout
        self.token = token


async def _kill_on_task_cancel(awaitable: Awaitable[_V]) -> _V:
    """Await *awaitable* (which runs sync ORM code in a thread); if this task is
    cancelled, cancel a token the thread's scope listens to, then re-raise."""
    token = CancelToken()
    reset = task_token.set(token)
    try:
        return await awaitable
    except asyncio.CancelledError:
        token.cancel()
        raise
    finally:
        task_token.reset(reset)


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

    def _scope(self) -> contextlib.AbstractContextManager[None]:
        spec = self._cancel_spec
        if spec is None:
            return contextlib.nullcontext()
        return cancel_scope(connections[self.db], timeout=spec.timeout, token=spec.token)

    async def _async(self, awaitable: Awaitable[_V]) -> _V:
        if self._cancel_spec is None:
            return await awaitable
        return await _kill_on_task_cancel(awaitable)

    # -- sync evaluation: each method is one evaluation ------------------------

    def _fetch_all(self) -> None:
        qs = cast(Any, self)
        if qs._result_cache is None or (qs._prefetch_related_lookups and not qs._prefetch_done):
            with self._scope():
                super()._fetch_all()

    def iterator(self, chunk_size: int | None = None) -> Iterator[_M]:
        if self._cancel_spec is None:
            yield from super().iterator(chunk_size)
            return
        with self._scope():
            yield from super().iterator(chunk_size)

    def count(self) -> int:
        with self._scope():
            return super().count()

    def exists(self) -> bool:
        with self._scope():
            return super().exists()

    def aggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        with self._scope():
            return super().aggregate(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> _M:
        with self._scope():
            return super().get(*args, **kwargs)

    def update(self, **kwargs: Any) -> int:
        with self._scope():
            return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        with self._scope():
            return super().delete()

    def in_bulk(self, *args: Any, **kwargs: Any) -> dict[Any, _M]:
        with self._scope():
            return super().in_bulk(*args, **kwargs)

    def contains(self, obj: Model) -> bool:
        with self._scope():
            return super().contains(obj)

    def explain(self, *, format: Any = None, **options: Any) -> str:  # noqa: A002 - Django's name
        with self._scope():
            return super().explain(format=format, **options)

    # -- async: Django runs the sync methods above in a thread ------------------

    async def aget(self, *args: Any, **kwargs: Any) -> _M:
        return await self._async(super().aget(*args, **kwargs))

    async def acount(self) -> int:
        return await self._async(super().acount())

    async def aexists(self) -> bool:
        return await self._async(super().aexists())

    async def aaggregate(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await self._async(super().aaggregate(*args, **kwargs))

    async def afirst(self) -> _M | None:
        return await self._async(super().afirst())

    async def alast(self) -> _M | None:
        return await self._async(super().alast())

    async def aupdate(self, **kwargs: Any) -> int:
        return await self._async(super().aupdate(**kwargs))

    async def adelete(self) -> tuple[int, dict[str, int]]:
        return await self._async(super().adelete())

    async def ain_bulk(self, *args: Any, **kwargs: Any) -> dict[Any, _M]:
        return await self._async(super().ain_bulk(*args, **kwargs))

    async def acontains(self, obj: Model) -> bool:
        return await self._async(super().acontains(obj))

    def __aiter__(self) -> AsyncIterator[_M]:
        async def results() -> AsyncIterator[_M]:
            await self._async(sync_to_async(self._fetch_all)())
            for item in self._result_cache or ():
                yield item

        return results()


class CancellableQuerySet(CancellableQuerySetMixin[_M]):
    """A QuerySet with :meth:`~CancellableQuerySetMixin.cancellable`
    (``objects = CancellableQuerySet.as_manager()``)."""


_classes: dict[type[QuerySet[Any]], type[QuerySet[Any]]] = {}


def _cancellable_class(cls: type[QuerySet[Any]]) -> type[QuerySet[Any]]:
    """*cls* with the mixin in front (built once per class)."""
    if issubclass(cls, CancellableQuerySetMixin):
        return cls
    made = _classes.get(cls)
    if made is None:
        made = type(f"Cancellable{cls.__name__}", (CancellableQuerySetMixin, cls), {"__module__": cls.__module__})
        made = _classes.setdefault(cls, made)
    return made


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
