"""Settings for the test suite: the default alias is pooled; tests build other wrappers from it."""

from __future__ import annotations

import os
import tempfile

import environ

import django_mysql_pooled.environ  # noqa: F401 - registers mysql-pooled://
from tests.server import find_server_url

_url = find_server_url()
_db = environ.Env.db_url_config(_url)
_db["ENGINE"] = "django_mysql_pooled"
_db.setdefault("OPTIONS", {})
_db["OPTIONS"].pop("pool", None)
_db["OPTIONS"]["pool"] = {"max_size": 4, "timeout": 10}
_db["TEST"] = {"NAME": os.environ.get("DMP_TEST_DB_NAME", "test_dmp")}

DATABASES = {"default": _db}

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django_mysql_pooled",
    "tests.testapp",
]
SECRET_KEY = "tests-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
# Keep the suite's pool snapshots out of the real per-user stats directory.
DJANGO_MYSQL_POOLED_STATS_DIR = os.environ.get(
    "DJANGO_MYSQL_POOLED_STATS_DIR", os.path.join(tempfile.gettempdir(), f"dmp-test-stats-{os.getuid()}")
)
