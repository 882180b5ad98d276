"""What the cancellation tests share: slow querysets, server-side checks, forking."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from tests.testapp.models import Item

#: ``cancellable()`` is added at run time: the tests reach it untyped.
items: Any = Item.objects


def slow(seconds: float) -> Any:
    """Items, each row sleeping *seconds* on the server."""
    return items.extra(where=["SLEEP(%s) = 0"], params=[seconds])


def stat(wrapper: BaseDatabaseWrapper, key: str) -> int:
    pool = getattr(wrapper, "pool", None)
    assert pool is not None
    return int(pool.get_stats().get(key, 0))


def wait_until(predicate: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{message} (after {timeout} s)"
        time.sleep(0.01)


def run_in_child(body: Callable[[], bool], timeout: float = 60.0) -> int:
    """Fork, run *body* in the child; return its exit code (0: ok, 3: false, 2: raised,
    -9: still running after *timeout* seconds, then killed)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child, measured by its exit code
        code = 1
        try:
            code = 0 if body() else 3
        except BaseException:
            code = 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return -9
        time.sleep(0.05)


def pause_after_ok(sent: Callable[[], bool]) -> Callable[..., Any]:
    """An execute wrapper (inside the scope's) that holds the statement's result, after the
    server's OK, until the kill was sent: the deadline fires between OK and "done"."""

    def pause(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        wait_until(sent, 20, "the watchdog never sent its kill")
        time.sleep(0.2)
        return result

    return pause
