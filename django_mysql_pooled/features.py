"""Database features: the stock MySQL ones, plus the Django test-suite skips a pool needs.

Like Django's PostgreSQL backend with its pool
(``django/db/backends/postgresql/features.py``): Django's own health-check
tests assume a new connection object per reconnect, while a pooled checkout
is health-checked by its reset and may hand back the same connection.
"""

from __future__ import annotations

from django.db.backends.mysql.features import DatabaseFeatures as MySQLDatabaseFeatures
from django.utils.functional import cached_property

from django_mysql_pooled.config import parse_pool_config

__all__ = ["DatabaseFeatures"]


class DatabaseFeatures(MySQLDatabaseFeatures):
    """MySQL features; ``django_test_skips`` adds the pool's."""

    @cached_property
    def django_test_skips(self) -> dict[str, set[str]]:  # type: ignore[override]
        skips: dict[str, set[str]] = dict(super().django_test_skips)
        if parse_pool_config(self.connection.alias, self.connection.settings_dict) is not None:
            skips["Pool does implicit health checks"] = {
                "backends.base.test_base.ConnectionHealthChecksTests.test_health_checks_enabled",
                "backends.base.test_base.ConnectionHealthChecksTests.test_set_autocommit_health_checks_enabled",
            }
        return skips
