"""What a checkout leaves behind ends at its checkin, and nothing of it reaches the next one.

Regression tests for the defects of the session-equivalence issue that need
no global change on the server: locks held while the connection sits idle,
threads that end without ``close()``, cursors kept past ``close()``, and a
failed restore. Each is also run where it must fail (``reset="checkout"``,
the stock backend, or the code before the fix) to show it can.
"""

from __future__ import annotations

import concurrent.futures
import copy
import gc
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import MySQLdb
import pytest
from django.db import DatabaseError, OperationalError, connections

from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper
from tests.conftest import WrapperFactory
from tests.testapp.models import Item

LOCK = "dmp_checkin_lock_" + os.environ.get("DMP_TEST_DB_NAME", "test_dmp")  # server-wide: one per concurrent run


def query(db: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def scalar(db: Any, sql: str, params: Any = None) -> Any:
    return query(db, sql, params)[0][0]


def poll(predicate: Any, timeout: float = 0.1) -> bool:
    """Whether *predicate* becomes true within *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def table(admin: Any) -> Iterator[str]:
    admin.select_db(str(connections["default"].settings_dict["NAME"]))
    admin.cursor().execute("CREATE TABLE IF NOT EXISTS dmp_checkin (id INT PRIMARY KEY)")
    yield "dmp_checkin"
    admin.cursor().execute("DROP TABLE IF EXISTS dmp_checkin")


def table_free(admin: Any, name: str) -> bool:
    """Whether another session can take a write lock on *name* now (waits at most 1 s)."""
    cursor = admin.cursor()
    cursor.execute("SET SESSION lock_wait_timeout = 1")
    try:
        cursor.execute(f"LOCK TABLES {name} WRITE")
    except Exception as exc:
        if exc.args[0] == 1205:  # ER_LOCK_WAIT_TIMEOUT
            return False
        raise
    cursor.execute("UNLOCK TABLES")
    return True


# -- locks --------------------------------------------------------------------------


@pytest.mark.parametrize(("reset", "released"), [(True, True), ("checkout", False)])
def test_locks_are_released_at_checkin(
    pooled: WrapperFactory, admin: Any, table: str, reset: object, released: bool
) -> None:
    db: Any = pooled({"max_size": 1, "reset": reset}, drain=False)  # the return worker resets
    assert scalar(db, "SELECT GET_LOCK(%s, 0)", [LOCK]) == 1
    query(db, f"LOCK TABLES {table} WRITE")
    db.close()
    # Free within 100 ms of the checkin, and still free while the connection sits idle.
    assert poll(lambda: scalar(admin, "SELECT IS_FREE_LOCK(%s)", [LOCK]) == 1) is released
    assert table_free(admin, table) is released
    time.sleep(0.6)
    assert (scalar(admin, "SELECT IS_FREE_LOCK(%s)", [LOCK]) == 1) is released
    assert db.pool.get_stats()["pool_available"] == 1
    db.close_pool()  # closes the idle connection, and with it what it still holds


def test_stock_persistent_connection_keeps_the_locks(stock: WrapperFactory, admin: Any, table: str) -> None:
    db: Any = stock()
    assert scalar(db, "SELECT GET_LOCK(%s, 0)", [LOCK]) == 1
    db.close_if_unusable_or_obsolete()  # the end of a request with CONN_MAX_AGE=None
    assert scalar(admin, "SELECT IS_FREE_LOCK(%s)", [LOCK]) == 0


# -- threads that end without close() ---------------------------------------------


def _settings(db: Any) -> dict[str, Any]:
    return copy.deepcopy(db.settings_dict)


def test_threads_ending_without_close_give_their_slots_back(
    pooled: WrapperFactory, caplog: pytest.LogCaptureFixture
) -> None:
    db: Any = pooled({"max_size": 2, "timeout": 5})
    settings, alias = _settings(db), db.alias
    errors: list[BaseException] = []

    def request(n: int) -> None:
        wrapper = PooledWrapper(copy.deepcopy(settings), alias)
        try:
            assert scalar(wrapper, "SELECT %s", [n]) == n
            query(wrapper, "SET @left_behind = %s", [n])
        except BaseException as exc:
            errors.append(exc)
        # no close(): the thread ends holding its checkout

    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        for round_ in range(4):  # 8 threads in rounds of 2 through a pool of 2
            threads = [threading.Thread(target=request, args=(round_ * 2 + i,)) for i in range(2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
    assert not errors, errors
    # The last round's checkouts are reclaimed by the next waiting checkout.
    assert scalar(db, "SELECT @left_behind") is None
    stats = db.pool.get_stats()
    assert stats["returns_reclaimed"] >= 6
    assert stats["leaks_detected"] == stats["returns_reclaimed"]
    assert stats["requests_timeouts"] == 0
    reclaimed = [r for r in caplog.records if "reclaimed a connection" in r.getMessage()]
    assert len(reclaimed) == stats["returns_reclaimed"]


def test_thread_pool_workers_without_close(pooled: WrapperFactory) -> None:
    # ThreadPoolExecutor workers keep running: their checkouts come back when the
    # executor shuts down and its threads end.
    db: Any = pooled({"max_size": 2, "timeout": 5})
    settings, alias = _settings(db), db.alias

    def work(n: int) -> int:
        wrapper = connections_for(settings, alias)
        return int(scalar(wrapper, "SELECT %s", [n]))

    for _ in range(3):
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as executor:
            assert sorted(executor.map(work, range(4))) == [0, 1, 2, 3]
    assert scalar(db, "SELECT 1") == 1
    assert db.pool.get_stats()["requests_timeouts"] == 0


_local = threading.local()


def connections_for(settings: dict[str, Any], alias: str) -> Any:
    """One wrapper per thread, as ``django.db.connections`` keeps them."""
    wrapper = getattr(_local, alias, None)
    if wrapper is None:
        wrapper = PooledWrapper(copy.deepcopy(settings), alias)
        setattr(_local, alias, wrapper)
    return wrapper


def test_a_reclaimed_connection_is_closed_while_its_wrapper_lives(pooled: WrapperFactory) -> None:
    # The thread ended but its wrapper (and a cursor of it) live on: the
    # connection is closed, so nothing of that checkout can reach another's session.
    db: Any = pooled({"max_size": 1, "timeout": 5})
    settings, alias = _settings(db), db.alias
    kept: list[Any] = []

    def request() -> None:
        wrapper = PooledWrapper(copy.deepcopy(settings), alias)
        wrapper.ensure_connection()
        kept.append(wrapper.cursor())

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    query(db, "SET @secret = 'belongs-to-the-next-checkout'")
    with pytest.raises(OperationalError):
        kept[0].execute("SELECT @secret")
    assert db.pool.get_stats()["returns_reclaimed"] == 1


def test_a_driver_cursor_of_a_collected_wrapper_cannot_reach_the_next_checkout(pooled: WrapperFactory) -> None:
    # mysqlclient's cursor holds the connection, not the wrapper: the wrapper can
    # be garbage-collected while the cursor lives. The reclaimed connection is closed.
    db: Any = pooled({"max_size": 1, "timeout": 5})
    settings, alias = _settings(db), db.alias
    kept: list[Any] = []

    def request() -> None:
        wrapper = PooledWrapper(copy.deepcopy(settings), alias)
        wrapper.ensure_connection()
        kept.append(wrapper.connection.cursor())

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    gc.collect()
    query(db, "SET @secret = 'belongs-to-the-next-checkout'")
    with pytest.raises(MySQLdb.Error):
        kept[0].execute("SELECT @secret")
    assert db.pool.get_stats()["returns_reclaimed"] == 1


def test_maintenance_reclaims_without_a_waiting_checkout(pooled: WrapperFactory, admin: Any) -> None:
    db: Any = pooled({"max_size": 2})
    settings, alias = _settings(db), db.alias

    def request() -> None:
        wrapper = PooledWrapper(copy.deepcopy(settings), alias)
        assert scalar(wrapper, "SELECT GET_LOCK(%s, 0)", [LOCK]) == 1

    thread = threading.Thread(target=request)
    thread.start()
    thread.join()
    # No one waits for a connection: the maintenance thread (about once a second)
    # reclaims it, and its reset releases the lock.
    assert poll(lambda: scalar(admin, "SELECT IS_FREE_LOCK(%s)", [LOCK]) == 1, timeout=5.0)
    assert db.pool.get_stats()["returns_reclaimed"] == 1


def test_a_shared_wrapper_is_not_reclaimed_when_its_thread_ends(pooled: WrapperFactory) -> None:
    db: Any = pooled({"max_size": 1, "timeout": 1})
    db.inc_thread_sharing()
    try:
        thread = threading.Thread(target=db.ensure_connection)
        thread.start()
        thread.join()
        time.sleep(1.5)  # a maintenance round or more
        assert db.pool.get_stats()["returns_reclaimed"] == 0
        assert scalar(db, "SELECT 1") == 1  # still this wrapper's checkout
    finally:
        db.close()
        db.dec_thread_sharing()


# -- cursors kept past close() -------------------------------------------------------


@pytest.mark.parametrize("reset", [True, "checkout"])
def test_cursor_kept_past_close_fails_and_cannot_touch_the_next_checkout(pooled: WrapperFactory, reset: object) -> None:
    db: Any = pooled({"max_size": 1, "reset": reset})
    settings, alias = _settings(db), db.alias
    cursor = db.cursor()
    first = scalar(db, "SELECT CONNECTION_ID()")
    db.close()
    other = PooledWrapper(copy.deepcopy(settings), alias)  # another request, same server connection
    assert scalar(other, "SELECT CONNECTION_ID()") == first
    with pytest.raises(OperationalError, match="this cursor's checkout ended"):
        cursor.execute("SET @x = 1")
    with pytest.raises(OperationalError):
        cursor.executemany("SELECT %s", [(1,)])
    assert scalar(other, "SELECT @x") is None
    cursor.close()  # closing it is harmless and touches nothing
    assert scalar(other, "SELECT 1") == 1
    other.close()


def test_stock_cursor_kept_past_close_fails_too(stock: WrapperFactory) -> None:
    db: Any = stock(CONN_MAX_AGE=0)
    cursor = db.cursor()
    db.close()
    db.ensure_connection()
    with pytest.raises(OperationalError):
        cursor.execute("SET @x = 1")


@pytest.mark.parametrize("rest", ["SELECT 2; SELECT 3", "SELECT SLEEP(20)"])
def test_unread_results_close_the_connection_at_once(pooled: WrapperFactory, rest: str) -> None:
    # The rest may still run on the server: reading it could hold the returning
    # thread as long. It is closed instead, as the stock backend's close() does.
    db: Any = pooled({"max_size": 1})
    cursor = db.cursor()
    cursor.execute(f"SELECT 1; {rest}")
    started = time.monotonic()
    db.close()
    assert time.monotonic() - started < 1.0
    stats = db.pool.get_stats()
    assert (stats["resets_failed"], stats["closes_broken"], stats["pool_size"]) == (1, 1, 0)
    assert scalar(db, "SELECT 42") == 42


def test_query_profiles_never_reach_the_next_checkout(pooled: WrapperFactory) -> None:
    db: Any = pooled({"max_size": 1})
    if not db.mysql_is_mariadb:
        pytest.skip("checked on MariaDB")
    query(db, "SET profiling = 1")
    assert scalar(db, "SELECT %s", ["secret-token"]) == "secret-token"
    query(db, "SET profiling = 0")  # the history stays: the reset does not clear it either
    db.close()
    assert scalar(db, "SELECT COUNT(*) FROM information_schema.PROFILING") == 0
    stats = db.pool.get_stats()
    assert (stats["resets_failed"], stats["closes_broken"]) == (1, 1)


@pytest.mark.parametrize("init_command", ["SET time_zone = '+00:00' -- utc", "SET time_zone = '+00:00';", "DO 1 # x"])
def test_init_command_with_a_comment_or_a_semicolon_is_restored(pooled: WrapperFactory, init_command: str) -> None:
    db: Any = pooled({"max_size": 1}, OPTIONS={"init_command": init_command})
    first = scalar(db, "SELECT CONNECTION_ID()")
    query(db, "SET time_zone = '+05:00', SQL_AUTO_IS_NULL = 1")
    db.close()
    assert scalar(db, "SELECT CONNECTION_ID()") == first, "the restore failed and closed it"
    assert scalar(db, "SELECT @@SESSION.sql_auto_is_null") == 0
    assert db.pool.get_stats()["resets_failed"] == 0


# -- a failed restore ----------------------------------------------------------------


@pytest.mark.parametrize("reset", [True, "checkout"])
def test_failed_restore_discards_the_connection(pooled: WrapperFactory, admin: Any, reset: object) -> None:
    admin.select_db(str(connections["default"].settings_dict["NAME"]))
    admin.cursor().execute("CREATE TABLE IF NOT EXISTS dmp_restore_probe (id INT)")
    init = {"init_command": "DO (SELECT COUNT(*) FROM dmp_restore_probe)"}
    db: Any = pooled({"max_size": 1, "reset": reset}, OPTIONS=init)
    try:
        first = scalar(db, "SELECT CONNECTION_ID()")
        admin.cursor().execute("DROP TABLE dmp_restore_probe")  # init_command fails from now on
        db.close()
        if reset == "checkout":
            with pytest.raises(DatabaseError):
                db.ensure_connection()  # the restore fails, and so does the replacement's connect
        stats = db.pool.get_stats()
        assert (stats["resets_failed"], stats["closes_broken"]) == (1, 1)
        assert (stats["pool_size"], stats["pool_available"]) == (0, 0), "never pooled half-restored"
        assert poll(
            lambda: first not in [r[0] for r in query(admin, "SELECT ID FROM information_schema.PROCESSLIST")], 5
        )
    finally:
        admin.cursor().execute("DROP TABLE IF EXISTS dmp_restore_probe")


# -- validation at checkout -----------------------------------------------------------


@pytest.mark.parametrize(("window", "fast", "ping"), [(0.5, 1, 0), (0, 0, 1)])
def test_validation_window_decides_between_socket_check_and_ping(
    pooled: WrapperFactory, window: float, fast: int, ping: int
) -> None:
    db: Any = pooled({"max_size": 1, "validation_window": window})
    scalar(db, "SELECT 1")
    db.close()
    scalar(db, "SELECT 1")
    stats = db.pool.get_stats()
    assert (stats["checks_fast"], stats["checks_ping"]) == (fast, ping)


@pytest.mark.parametrize(("autocommit", "level"), [(True, logging.WARNING), (False, logging.INFO)])
def test_a_transaction_rolled_back_at_checkin_is_normal_without_autocommit(
    pooled: WrapperFactory, caplog: pytest.LogCaptureFixture, autocommit: bool, level: int
) -> None:
    db: Any = pooled({"max_size": 1}, AUTOCOMMIT=autocommit)
    with caplog.at_level(logging.INFO, logger="django_mysql_pooled"):
        for _ in range(3):  # a request each
            if autocommit:
                db.set_autocommit(False)
            query(db, f"SELECT COUNT(*) FROM {Item._meta.db_table}")  # InnoDB: opens a transaction
            db.close()
    records = [r for r in caplog.records if "rolled back" in r.getMessage()]
    assert [r.levelno for r in records] == [level] * 3
    assert db.pool.get_stats()["returns_rolled_back"] == 3
