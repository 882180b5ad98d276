"""Settings of the ASGI app :mod:`tests.faults.test_asgi` serves with uvicorn (views: :mod:`tests.faults.asgi_app`).

Read from the environment the test sets for the server process:

* ``DMP_ASGI_HOST``, ``DMP_ASGI_PORT``, ``DMP_ASGI_USER``,
  ``DMP_ASGI_PASSWORD``, ``DMP_ASGI_NAME``: the database;
* ``DMP_ASGI_MAX_SIZE``: the pool's ``max_size`` (default 8);
* ``DMP_ASGI_STOCK=1``: Django's stock MySQL backend with persistent
  connections (``CONN_MAX_AGE = None``) instead of the pool;
* ``DMP_ASGI_STATS_DIR``: where the pool publishes its snapshots.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

STOCK = os.environ.get("DMP_ASGI_STOCK") == "1"
MAX_SIZE = int(os.environ.get("DMP_ASGI_MAX_SIZE", "8"))

_database: dict[str, Any] = {
    "NAME": os.environ.get("DMP_ASGI_NAME", "dmp_asgi"),
    "USER": os.environ.get("DMP_ASGI_USER", "root"),
    "PASSWORD": os.environ.get("DMP_ASGI_PASSWORD", ""),
    "HOST": os.environ.get("DMP_ASGI_HOST", "127.0.0.1"),
    "PORT": os.environ.get("DMP_ASGI_PORT", "3306"),
}
if STOCK:
    _database.update(ENGINE="django.db.backends.mysql", CONN_MAX_AGE=None, OPTIONS={})
else:
    _database.update(
        ENGINE="django_mysql_pooled",
        CONN_MAX_AGE=0,
        OPTIONS={"pool": {"max_size": MAX_SIZE, "timeout": 30.0}},
    )

DATABASES = {"default": _database}
INSTALLED_APPS = ["django_mysql_pooled", "tests.testapp"]
ROOT_URLCONF = "tests.faults.asgi_app"
MIDDLEWARE: list[str] = []
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None
DJANGO_MYSQL_POOLED_STATS_DIR = os.environ.get(
    "DMP_ASGI_STATS_DIR", os.path.join(tempfile.gettempdir(), f"dmp-test-stats-{os.getuid()}")
)
