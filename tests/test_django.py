"""Django's transaction machinery and test runner on the pooled backend."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import ProgrammingError, connection, transaction

from tests.testapp.models import Item

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db(transaction=True)
def test_atomic_savepoints_and_on_commit() -> None:
    committed: list[str] = []
    with transaction.atomic():
        Item.objects.create(name="outer")
        transaction.on_commit(lambda: committed.append("outer"))
        try:
            with transaction.atomic():
                Item.objects.create(name="inner")
                transaction.on_commit(lambda: committed.append("inner"))
                raise ValueError("roll back the savepoint")
        except ValueError:
            pass
    assert sorted(Item.objects.values_list("name", flat=True)) == ["outer"]
    assert committed == ["outer"]


@pytest.mark.django_db(transaction=True)
def test_select_for_update_blocks_another_thread_until_commit() -> None:
    item = Item.objects.create(name="locked", value=0)
    acquired = threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with transaction.atomic():
                Item.objects.select_for_update().get(pk=item.pk)
                acquired.set()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        Item.objects.select_for_update().get(pk=item.pk)
        thread = threading.Thread(target=other)
        thread.start()
        assert not acquired.wait(0.5), "the row lock was not held"
    thread.join(10)
    assert acquired.is_set() and not errors


@pytest.mark.django_db(transaction=True)
def test_close_inside_atomic_returns_connection_and_forbids_reuse() -> None:
    pool: Any = connection.pool  # type: ignore[attr-defined]
    with (
        pytest.raises(ProgrammingError, match="Cannot open a new connection in an atomic block"),
        transaction.atomic(),
    ):
        Item.objects.create(name="lost")
        connection.close()
        Item.objects.count()
    assert pool.get_stats()["connections_in_use"] == 0
    assert not Item.objects.filter(name="lost").exists()
    assert pool.get_stats()["returns_rolled_back"] >= 1


def test_manage_py_test_parallel_uses_the_pool_on_each_clone() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DMP_TEST_DB_NAME": os.environ.get("DMP_TEST_DB_NAME", "test_dmp") + "_runner",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "test", "tests.parallel_testcases", "--parallel", "2", "--noinput", "-v", "2"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Ran 2 tests" in output
    assert "Cloning test database" in output


def test_is_usable_after_the_connection_went_back_to_the_pool(pooled: Any) -> None:
    db = pooled({"max_size": 1})
    db.ensure_connection()
    assert db.is_usable()
    db.close()
    assert db.connection is None
    assert not db.is_usable()


def test_init_connection_state_called_again_does_what_the_stock_backend_does(pooled: Any) -> None:
    db = pooled({"max_size": 1})
    db.ensure_connection()
    db.close()
    db.ensure_connection()  # reused: Django's settings deferred to the first statement
    db.init_connection_state()  # a later call sends them now, as the stock backend
    with db.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.tx_isolation")
        assert cursor.fetchone() == ("READ-COMMITTED",)
