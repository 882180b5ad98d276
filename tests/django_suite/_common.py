"""What ``settings_pooled`` and ``settings_stock`` share: Django's test settings for MySQL.

Imported as ``dmp_djsuite._common`` (``run.py`` puts a symlink named
``dmp_djsuite`` to this directory on ``PYTHONPATH``). The shape is Django's
``tests/test_sqlite.py`` (aliases ``default`` and ``other``) pointed at the
MySQL/MariaDB server from ``DATABASE_URL``, else ``root@127.0.0.1:3306``.
Each flavour gets its own test database names (``<prefix><flavour>_default``
/ ``_other``, prefix ``dmp_djsuite_`` or ``$DMP_DJSUITE_DB_PREFIX``) so the
two runs, and other suites on the same server, never collide.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import environ

# Accept this project's mysql-pooled:// URLs without importing the backend here.
environ.Env.DB_SCHEMES.setdefault("mysql-pooled", "django_mysql_pooled")

DEFAULT_URL = "mysql://root@127.0.0.1:3306/dmp_djsuite"
DB_PREFIX = os.environ.get("DMP_DJSUITE_DB_PREFIX", "dmp_djsuite_")


def database(flavour: str, alias: str, engine: str, pool: object) -> dict[str, Any]:
    """One ``DATABASES`` entry for *alias* of the *flavour* run."""
    config: dict[str, Any] = environ.Env.db_url_config(os.environ.get("DATABASE_URL") or DEFAULT_URL)
    options = {k: v for k, v in (config.get("OPTIONS") or {}).items() if k != "pool" and not k.startswith("pool_")}
    if pool is not None:
        options["pool"] = pool
    config.update(
        ENGINE=engine,
        OPTIONS=options,
        CONN_MAX_AGE=0,
        TEST={"NAME": f"{DB_PREFIX}{flavour}_{alias}", "CHARSET": "utf8mb4", "COLLATION": "utf8mb4_general_ci"},
    )
    return config


def databases(flavour: str, engine: str, pool: object = None) -> dict[str, dict[str, Any]]:
    """``DATABASES`` with the ``default`` and ``other`` aliases Django's suite needs."""
    return {alias: database(flavour, alias, engine, pool) for alias in ("default", "other")}


# As Django's tests/test_sqlite.py.
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False

# Collect every test's outcome into the JSON file run.py reads.
TEST_RUNNER = f"{__package__}.recording.RecordingRunner"

# Keep pool snapshots out of the real per-user stats directory.
DJANGO_MYSQL_POOLED_STATS_DIR = os.environ.get(
    "DJANGO_MYSQL_POOLED_STATS_DIR", os.path.join(tempfile.gettempdir(), f"dmp-djsuite-stats-{os.getuid()}")
)
