"""After ``fork()``: Django wrappers drop the connection they inherited from the parent.

The registry (:mod:`django_mysql_pooled.pool.registry`) detaches the
inherited pools' connections without ``COM_QUIT``; a wrapper still holding
one of them forgets it here, so its next query checks out of the child's own
pool.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForgetsAfterFork", "track"]


class ForgetsAfterFork(Protocol):
    def forget_inherited_connection(self) -> None: ...


#: Every pooled wrapper of this process (of every thread).
_wrappers: weakref.WeakSet[ForgetsAfterFork] = weakref.WeakSet()


def track(wrapper: ForgetsAfterFork) -> None:
    """Have *wrapper* forget its connection in a forked child."""
    _wrappers.add(wrapper)


def _forget_after_fork() -> None:
    for wrapper in list(_wrappers):
        wrapper.forget_inherited_connection()


os.register_at_fork(after_in_child=_forget_after_fork)
