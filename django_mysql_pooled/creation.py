"""Test database creation that closes the pool around database switches.

The pool's connections are bound to the database in ``NAME`` when they were
opened. Django switches ``NAME`` to the test database (and to per-worker
clones with ``--parallel``), so the pool is closed first and rebuilt on the
next checkout, as Django's PostgreSQL backend does
(``django/db/backends/postgresql/creation.py``).
"""

from __future__ import annotations

from typing import Any

from django.db.backends.mysql.creation import DatabaseCreation as MySQLDatabaseCreation

__all__ = ["DatabaseCreation"]


class DatabaseCreation(MySQLDatabaseCreation):
    """Close the alias's pool before the test database is created, cloned or destroyed."""

    def _close_pool(self) -> None:
        self.connection.close()
        close_pool = getattr(self.connection, "close_pool", None)
        if close_pool is not None:
            close_pool()

    def _create_test_db(self, verbosity: int, autoclobber: bool, keepdb: bool = False) -> str:
        self._close_pool()
        return super()._create_test_db(verbosity, autoclobber, keepdb)  # type: ignore[misc, no-any-return]

    def _clone_test_db(self, suffix: Any, verbosity: int, keepdb: bool = False) -> None:
        self._close_pool()
        super()._clone_test_db(suffix, verbosity, keepdb)  # type: ignore[misc]

    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        self._close_pool()
        super()._destroy_test_db(test_database_name, verbosity)  # type: ignore[misc]

    def setup_worker_connection(self, _worker_id: int) -> None:
        self._close_pool()
        super().setup_worker_connection(_worker_id)
