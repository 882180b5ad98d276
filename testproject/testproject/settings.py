"""Settings for the test project, read from environment variables.

``DATABASE_URL`` (django-environ) selects the database; the default is a
pooled MariaDB/MySQL on 127.0.0.1::

    mysql-pooled://root@127.0.0.1:3306/dmp_testproject?pool=true&pool_max_size=8

which yields ``ENGINE: "django_mysql_pooled"``, ``OPTIONS: {"pool": "true",
"pool_max_size": 8}`` and no ``CONN_MAX_AGE`` key (Django's default, 0, which
the pool requires: it owns connection lifetime).

``TESTPROJECT_STOCK=1`` turns the same database into Django's stock MySQL
backend with persistent connections (``CONN_MAX_AGE`` from
``TESTPROJECT_CONN_MAX_AGE``, default 600 s): the configuration whose session
leaks ``demo.sh --stock`` shows. A plain ``mysql://...?conn_max_age=600``
``DATABASE_URL`` does the same.

Other variables: ``DJANGO_DEBUG`` (off), ``DJANGO_SECRET_KEY``,
``DJANGO_ALLOWED_HOSTS`` (comma-separated; localhost by default),
``DJANGO_LOG_LEVEL`` (``WARNING``; the backend's logger).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import environ

import django_mysql_pooled.environ  # noqa: F401 - registers the mysql-pooled:// scheme

BASE_DIR = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "mysql-pooled://root@127.0.0.1:3306/dmp_testproject?pool=true&pool_max_size=8"
STOCK_ENGINE = "django.db.backends.mysql"

env = environ.Env()

DEBUG: bool = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY: str = env.str("DJANGO_SECRET_KEY", default="testproject-demo-only-not-secret")
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])


def _database() -> dict[str, Any]:
    db: dict[str, Any] = env.db("DATABASE_URL", default=DEFAULT_DATABASE_URL)
    if env.bool("TESTPROJECT_STOCK", default=False):
        # The stock backend, persistent connections, no pool options.
        options = db.get("OPTIONS") or {}
        db["OPTIONS"] = {k: v for k, v in options.items() if k != "pool" and not k.startswith("pool_")}
        db["ENGINE"] = STOCK_ENGINE
        db["CONN_MAX_AGE"] = env.int("TESTPROJECT_CONN_MAX_AGE", default=600)
    else:
        # Absent from a mysql-pooled:// URL without ?conn_max_age=: Django's
        # default, 0, is what the pool requires (anything else is refused).
        db.setdefault("CONN_MAX_AGE", 0)
    return db


DATABASES: dict[str, dict[str, Any]] = {"default": _database()}

INSTALLED_APPS = [
    "django_mysql_pooled",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "testproject.urls"
WSGI_APPLICATION = "testproject.wsgi.application"
ASGI_APPLICATION = "testproject.asgi.application"

TEMPLATES: list[dict[str, Any]] = []

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# With DEBUG off Django would only mail tracebacks to ADMINS: log them to
# stderr instead (gunicorn's log under testproject/.demo/ in the demo).
LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django": {"handlers": ["stderr"], "level": "WARNING"},
        # Errors (500s) only: the stock demo produces hundreds of expected 404s.
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "django_mysql_pooled": {"handlers": ["stderr"], "level": env.str("DJANGO_LOG_LEVEL", default="WARNING")},
        # The shop's views: /slow-count/ logs a cancelled task at INFO.
        "shop": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
