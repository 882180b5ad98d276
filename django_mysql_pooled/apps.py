"""Django app configuration: add ``django_mysql_pooled`` to ``INSTALLED_APPS``
for the management commands and system checks."""

from __future__ import annotations

from django.apps import AppConfig

__all__ = ["DjangoMySQLPooledConfig"]


class DjangoMySQLPooledConfig(AppConfig):
    """Registers the package's system checks."""

    name = "django_mysql_pooled"
    verbose_name = "MySQL connection pool"
    default = True

    def ready(self) -> None:
        from django_mysql_pooled import checks  # noqa: F401 - registers the checks
