"""A KILL QUERY that outlives its statement never reaches the next checkout (security review SEC-1).

``Execution.finish()`` waits at most ``FINISH_BOUND`` seconds for a kill in
flight, then marks the statement done and lets the connection go back to the
pool. Nothing cancels the kill still in flight: the sender thread goes on and
sends ``KILL QUERY <id>`` whenever its connect completes, and the id is now
another checkout's session. The killer's connect is not bounded by
``KILL_BOUND``: with rotating credentials it calls the provider (a secrets
manager, with its own network timeouts and retries) inside ``kill()``.

The test shortens ``FINISH_BOUND`` (45 s in the package) so that it runs in a
few seconds; the same happens with the real bound and a provider that takes
longer than ~45 s (botocore's default timeouts are 60 s connect + 60 s read).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest
from django.db import connections

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel import execution
from django_mysql_pooled.cancel import scope as scope_module
from django_mysql_pooled.cancel.killers import all_killers
from django_mysql_pooled.cancel.scope import cancel_scope
from tests.security.helpers import uncancellable_sleep

pytestmark = pytest.mark.timeout(60)

SLOW_LOGIN = 4.0  # seconds the provider takes when the killer connects to send the kill


@pytest.fixture(autouse=True)
def _close_killers() -> Iterator[None]:
    yield
    for killer in all_killers():
        killer.close()


def _inside_kill() -> bool:
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_kill":
            return True
        frame = frame.f_back
    return False


def test_a_late_kill_never_reaches_the_next_checkout(pooled: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(execution, "FINISH_BOUND", 0.5)
    _scenario(pooled, SLOW_LOGIN)


@pytest.mark.skipif(not os.environ.get("DMP_SEC_SLOW"), reason="DMP_SEC_SLOW=1: ~50 s with the real FINISH_BOUND")
@pytest.mark.timeout(180)
def test_a_late_kill_never_reaches_the_next_checkout_real_bound(pooled: Any) -> None:
    _scenario(pooled, execution.FINISH_BOUND + 2.0)


def _scenario(pooled: Any, slow_login: float) -> None:
    # No server-side limit (MySQL applies MAX_EXECUTION_TIME to SELECT only; on MariaDB the
    # limit and the watchdog race at the same deadline): the watchdog's kill is what runs.
    patch = pytest.MonkeyPatch()
    patch.setattr(scope_module._Hook, "_with_server_limit", lambda self, raw, sql: sql)
    try:
        _story(pooled, slow_login)
    finally:
        patch.undo()


def _story(pooled: Any, slow_login: float) -> None:  # long: one story, two requests
    settings = connections["default"].settings_dict
    killer_logins: list[str] = []
    kill_connecting = threading.Event()

    def provider() -> dict[str, str]:
        name = threading.current_thread().name
        if name.startswith("django_mysql_pooled-killer"):
            killer_logins.append(name)
            if not _inside_kill():
                # The killer's "keep ready" connects fail (secrets manager throttled):
                # the kill will have to connect itself.
                raise RuntimeError("throttled")
            kill_connecting.set()
            time.sleep(slow_login)  # ...and that connect is slow
        return {"user": settings["USER"], "password": settings["PASSWORD"] or ""}

    request_a = pooled({"max_size": 1, "credentials": provider}, alias="sec_stale_kill")
    # Request A: a cancellable statement that ends just after its deadline, while the kill
    # the watchdog requested at the deadline is still connecting.
    with pytest.raises(QueryCancelled), cancel_scope(request_a, timeout=0.3), request_a.cursor() as cursor:
        cursor.execute("SELECT SLEEP(0.6)")
    victim_id = request_a.connection.thread_id()
    assert kill_connecting.wait(10), "the kill never started connecting"
    request_a.close()  # back to the pool (max_size=1: the next checkout gets this session)

    # Request B, another request of the same process: NOT cancellable.
    request_b = pooled({"max_size": 1, "credentials": provider}, alias="sec_stale_kill")
    session, outcome, elapsed = uncancellable_sleep(request_b, slow_login + 1)
    # A's session, which the late kill may still reach, is never handed out again.
    assert session != victim_id
    # The pool must never let A's kill reach B's statement.
    assert outcome.startswith("completed") and elapsed > slow_login + 0.5, (
        f"request B's uncancellable query was killed by request A's late KILL QUERY {victim_id}: "
        f"{outcome} after {elapsed:.2f} s"
    )
