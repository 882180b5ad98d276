"""Django's test suite on the stock ``django.db.backends.mysql`` backend (the baseline)."""

from __future__ import annotations

from ._common import (  # noqa: F401 - settings
    DEFAULT_AUTO_FIELD,
    DJANGO_MYSQL_POOLED_STATS_DIR,
    PASSWORD_HASHERS,
    SECRET_KEY,
    TEST_RUNNER,
    USE_TZ,
    databases,
)

DATABASES = databases("stock", "django.db.backends.mysql")
