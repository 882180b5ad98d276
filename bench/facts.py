"""Machine, library and server facts for the results page."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from typing import Any

from MySQLdb import _mysql

PACKAGES = ("Django", "mysqlclient", "django-db-connection-pool", "SQLAlchemy", "gunicorn", "django-mysql-pooled")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30)
    except (ValueError, OSError):
        return 0.0


def _wrk_version() -> str:
    binary = shutil.which("wrk")
    if binary is None:
        return "not installed"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    first = (done.stdout or done.stderr).splitlines()[0]
    return first.split(" Copyright")[0].strip()


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    """What this run ran on (the server facts come from :func:`bench.db.server_facts`)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(_memory_gib(), 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "client_library": f"{_client_library()} {_mysql.get_client_info()}",
        "packages": versions,
        "wrk": _wrk_version(),
    }


def _client_library() -> str:
    """Which C client mysqlclient is linked to (from the loaded libraries)."""
    try:
        with open(f"/proc/{os.getpid()}/maps", encoding="utf-8") as maps:
            text = maps.read()
    except OSError:
        return "C client"
    if "libmariadb" in text:
        return "MariaDB Connector/C"
    if "libmysqlclient" in text:
        return "libmysqlclient"
    return "C client"
