"""Settings of the benchmark project.

``DMP_BENCH_MODE`` (A, B, C, D, D0; see :mod:`bench.modes`), ``DMP_BENCH_PORT``
(the server's, or a proxy's), ``DMP_BENCH_MAX_SIZE`` and ``DMP_BENCH_MIN_SIZE``
(the pools'), ``DMP_BENCH_NUM_WORKERS`` (D's return workers; unset: the default),
plus ``BENCH_DB_HOST``/``_USER``/``_PASSWORD`` and ``BENCH_DB_SSL_CA`` (TLS).
"""

from __future__ import annotations

import os
from typing import Any

from bench.modes import Server, database

_server = Server.from_env()

DATABASES: dict[str, dict[str, Any]] = {
    "default": database(
        os.environ.get("DMP_BENCH_MODE", "D"),
        host=_server.host,
        port=int(os.environ.get("DMP_BENCH_PORT", str(_server.port))),
        user=_server.user,
        password=_server.password,
        max_size=int(os.environ.get("DMP_BENCH_MAX_SIZE", "8")),
        min_size=int(os.environ.get("DMP_BENCH_MIN_SIZE", "0")),
        num_workers=int(os.environ["DMP_BENCH_NUM_WORKERS"]) if "DMP_BENCH_NUM_WORKERS" in os.environ else None,
        tls=_server.tls_options(),
    )
}

INSTALLED_APPS = ["bench.site"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "bench.site.urls"
SECRET_KEY = "bench-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
