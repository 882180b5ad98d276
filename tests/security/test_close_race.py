"""Security review (sec-review): a connection returned after ``close()`` is neither reset nor closed.

``close()`` stops the return workers but leaves ``_return_workers`` set, so a
``putconn()`` after it (a request still holding a checkout while another
thread calls ``close_pool()``: the test database switch, a reconfiguration,
shutdown) queues the connection for workers that have ended. The connection
is never reset and never closed by the pool: what the request held on the
server (``GET_LOCK``, ``LOCK TABLES``, temporary tables) stays held for as
long as something references the pool, and ``drain()`` never returns True.
The docs promise "connections checked out now are closed when they are
returned" (``MaintainedPoolState.close``).
"""

from __future__ import annotations

import gc
import time
from typing import Any


def _lock_holder(admin: Any, name: str) -> Any:
    cursor = admin.cursor()
    cursor.execute("SELECT IS_USED_LOCK(%s)", [name])
    return cursor.fetchone()[0]


def test_connection_returned_after_close_is_closed(pooled: Any, admin: Any) -> None:
    request = pooled({"max_size": 2}, alias="sec_close_race", drain=False)
    with request.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK('sec_close_race', 0)")
    holder = request.connection.thread_id()
    pool = request.pool
    pool.close()  # another thread closes the pool while the request still holds its connection
    request.close()  # the request ends: its connection is returned to the closed pool
    time.sleep(1.0)
    assert not pool._returning, f"a returned connection is parked on stopped workers: {pool._returning}"
    assert _lock_holder(admin, "sec_close_race") is None, f"session {holder} still holds the request's GET_LOCK"


def test_production_path_relies_on_refcounting(pooled: Any, admin: Any) -> None:
    """The same through ``close_pool()`` with no reference kept to the pool: the lock goes away
    only because the pool object (and with it the parked entry) is freed by reference counting,
    whose mysqlclient dealloc closes the socket. Documented here for the report."""
    request = pooled({"max_size": 2}, alias="sec_close_race2", drain=False)
    other = pooled({"max_size": 2}, alias="sec_close_race2", drain=False)
    with request.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK('sec_close_race2', 0)")
    other.close_pool()
    request.close()
    gc.collect()
    deadline = time.monotonic() + 5
    while _lock_holder(admin, "sec_close_race2") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lock_holder(admin, "sec_close_race2") is None
