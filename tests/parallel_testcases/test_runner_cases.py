"""Django TestCases run by ``manage.py test --parallel 2`` from test_django.py.

Each case checks that the pooled connection really talks to the database
Django configured for this worker (the test database or its clone).
"""

from __future__ import annotations

from django.db import connection, transaction
from django.test import TestCase, TransactionTestCase

from tests.testapp.models import Item


def current_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT DATABASE()")
        row = cursor.fetchone()
    assert row is not None
    return str(row[0])


class PooledTestCase(TestCase):
    def test_uses_the_test_database(self) -> None:
        self.assertEqual(current_database(), connection.settings_dict["NAME"])
        self.assertTrue(connection.settings_dict["NAME"].startswith("test_"))
        self.assertIsNotNone(connection.pool)  # type: ignore[attr-defined]
        Item.objects.create(name="a")
        self.assertEqual(Item.objects.count(), 1)


class PooledTransactionTestCase(TransactionTestCase):
    def test_atomic_and_on_commit(self) -> None:
        self.assertEqual(current_database(), connection.settings_dict["NAME"])
        done: list[int] = []
        with transaction.atomic():
            Item.objects.create(name="b")
            transaction.on_commit(lambda: done.append(1))
        self.assertEqual(done, [1])
        self.assertEqual(Item.objects.filter(name="b").count(), 1)
