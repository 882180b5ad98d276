"""What the security tests share."""

from __future__ import annotations

import time
from typing import Any

from django.db import OperationalError


def uncancellable_sleep(wrapper: Any, seconds: float) -> tuple[int, str, float]:
    """Run ``SELECT SLEEP(seconds)`` on a checkout of *wrapper* (no cancellation), then return it.

    :returns: the session's connection id, how the statement ended
        (``"completed: <rows>"`` or ``"failed: <error>"``) and the seconds it took.
    """
    started = time.monotonic()
    with wrapper.cursor() as cursor:
        session = int(wrapper.connection.thread_id())
        try:
            cursor.execute(f"SELECT SLEEP({seconds})")
            outcome = f"completed: {cursor.fetchall()}"
        except OperationalError as exc:
            outcome = f"failed: {exc}"
    elapsed = time.monotonic() - started
    wrapper.close()
    return session, outcome, elapsed
