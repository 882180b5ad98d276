"""Django's test suite on ``django_mysql_pooled`` with the pool on (both aliases)."""

from __future__ import annotations

import os

from ._common import (  # noqa: F401 - settings
    DEFAULT_AUTO_FIELD,
    DJANGO_MYSQL_POOLED_STATS_DIR,
    PASSWORD_HASHERS,
    SECRET_KEY,
    TEST_RUNNER,
    USE_TZ,
    databases,
)

# The documented defaults (max_size 10, timeout 30 s, reset on) unless
# DMP_DJSUITE_POOL_MAX_SIZE overrides the size.
_POOL: dict[str, object] = {}
if os.environ.get("DMP_DJSUITE_POOL_MAX_SIZE"):
    _POOL["max_size"] = int(os.environ["DMP_DJSUITE_POOL_MAX_SIZE"])

DATABASES = databases("pooled", "django_mysql_pooled", _POOL or True)
