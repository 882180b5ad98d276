"""System checks for pooled aliases (IDs ``django_mysql_pooled.E00x`` / ``W00x``).

Each hint links to the docs heading of the same ID.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import ImproperlyConfigured

from django_mysql_pooled.config import parse_pool_config

__all__ = ["check_pool_settings"]

ENGINE = "django_mysql_pooled"
DOCS = "https://django-mysql-pooled.readthedocs.io/en/latest/checks.html"


def _hint(check_id: str) -> str:
    return f"See {DOCS}#{check_id.replace('.', '-').lower()}"


@register()
def check_pool_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001: invalid pool options (including ``CONN_MAX_AGE != 0``); W001: ``reset`` off."""
    messages: list[CheckMessage] = []
    for alias, settings_dict in settings.DATABASES.items():
        if settings_dict.get("ENGINE") != ENGINE:
            continue
        try:
            config = parse_pool_config(alias, settings_dict)
        except ImproperlyConfigured as exc:
            messages.append(Error(str(exc), hint=_hint("django_mysql_pooled.E001"), id="django_mysql_pooled.E001"))
            continue
        if config is not None and not config.reset:
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}]['OPTIONS']['pool']['reset'] is False: session state "
                    "(transactions, variables, temporary tables, locks) leaks between requests.",
                    hint=_hint("django_mysql_pooled.W001"),
                    id="django_mysql_pooled.W001",
                )
            )
    return messages
