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
        """Register the checks; add ``QuerySet.cancellable()`` unless
        ``settings.DJANGO_MYSQL_POOLED_PATCH_QUERYSET`` is ``False``."""
        from django.conf import settings

        from django_mysql_pooled.cancel.queryset import patch_queryset
        from django_mysql_pooled.monitoring import checks  # noqa: F401 - registers the checks

        if getattr(settings, "DJANGO_MYSQL_POOLED_PATCH_QUERYSET", True):
            patch_queryset()
