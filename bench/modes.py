"""The five configurations compared, as Django ``DATABASES`` entries.

* A: stock ``django.db.backends.mysql``, ``CONN_MAX_AGE = 0`` (a connection per request);
* B: stock, ``CONN_MAX_AGE = None`` and ``CONN_HEALTH_CHECKS = True`` (one per thread, pinged per request);
* C: django-db-connection-pool (SQLAlchemy ``QueuePool`` with pre-ping);
* D: this backend, pool and ``COM_RESET_CONNECTION`` on checkout;
* D0: this backend, pool without reset (``reset=False``: a ping per checkout);
* D16: D with ``max_size`` 16, as many connections as B holds at 16 threads (equal connection counts).

With ``ssl_ca`` (the ``tls`` workload, ``BENCH_DB_SSL_CA``) every mode connects
over TLS and verifies the server's certificate (``ssl_mode = VERIFY_IDENTITY``).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

LABELS = {
    "A": "stock, CONN_MAX_AGE=0",
    "B": "stock, CONN_MAX_AGE=None + health checks",
    "C": "django-db-connection-pool (QueuePool, pre-ping)",
    "D": "django_mysql_pooled (reset on)",
    "D0": "django_mysql_pooled (reset=False)",
    "D16": "D with max_size 16: as many connections as B holds at 16 threads (equal-count rows only)",
}
#: The equal-count variant's pool size.
EQUAL_MAX_SIZE = 16

#: The schema and table every workload reads.
DATABASE_NAME = "dmp_bench"
ROWS = 1000


@dataclasses.dataclass(frozen=True)
class Server:
    """Where the benchmark's MySQL/MariaDB server is (``BENCH_DB_*`` environment variables)."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    #: The CA certificate (PEM) of a server that requires TLS; empty: no TLS.
    ssl_ca: str = ""

    @classmethod
    def from_env(cls) -> Server:
        return cls(
            host=os.environ.get("BENCH_DB_HOST", "127.0.0.1"),
            port=int(os.environ.get("BENCH_DB_PORT", "3306")),
            user=os.environ.get("BENCH_DB_USER", "root"),
            password=os.environ.get("BENCH_DB_PASSWORD", ""),
            ssl_ca=os.environ.get("BENCH_DB_SSL_CA", ""),
        )

    def tls_options(self) -> dict[str, Any]:
        """``MySQLdb.connect()``/``OPTIONS`` arguments for TLS (none without :attr:`ssl_ca`)."""
        return {"ssl": {"ca": self.ssl_ca}, "ssl_mode": "VERIFY_IDENTITY"} if self.ssl_ca else {}


def database(
    mode: str,
    *,
    host: str,
    port: int,
    user: str,
    password: str,
    max_size: int,
    min_size: int,
    tls: dict[str, Any] | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Return the ``DATABASES["default"]`` of *mode*; the pools get *min_size*/*max_size*.

    :param tls: :meth:`Server.tls_options`, added to every mode's ``OPTIONS``.
    :param num_workers: D's return workers (``None``: the backend's default);
        the counted workloads set 0 so that the reset at checkin runs, and is
        counted, in the cycle's own thread.
    """
    db: dict[str, Any] = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": DATABASE_NAME,
        "USER": user,
        "PASSWORD": password,
        "HOST": host,
        "PORT": str(port),
        "CONN_MAX_AGE": 0,
        "OPTIONS": dict(tls or {}),
    }
    if mode == "A":
        return db
    if mode == "B":
        return {**db, "CONN_MAX_AGE": None, "CONN_HEALTH_CHECKS": True}
    if mode == "C":
        kept = min_size or max_size  # QueuePool keeps pool_size and opens up to max_overflow more
        options = {"POOL_SIZE": kept, "MAX_OVERFLOW": max_size - kept, "PRE_PING": True, "RECYCLE": 3600, "TIMEOUT": 30}
        return {**db, "ENGINE": "dj_db_conn_pool.backends.mysql", "POOL_OPTIONS": options}
    if mode == "D16":
        return database(
            "D",
            host=host,
            port=port,
            user=user,
            password=password,
            max_size=EQUAL_MAX_SIZE,
            min_size=0,
            tls=tls,
            num_workers=num_workers,
        )
    if mode in ("D", "D0"):
        pool: dict[str, Any] = {"min_size": min_size, "max_size": max_size, "timeout": 30.0}
        if mode == "D0":
            pool["reset"] = False
        elif num_workers is not None:
            pool["num_workers"] = num_workers
        return {**db, "ENGINE": "django_mysql_pooled", "OPTIONS": {**db["OPTIONS"], "pool": pool}}
    raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(LABELS)}")
