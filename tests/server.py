"""Find the MySQL/MariaDB server the tests run against (DESIGN section 9).

In order: ``DATABASE_URL``; a server on 127.0.0.1:3306; a MySQL container
through testcontainers when a Docker engine answers; else a clear error that
says how to get one.
"""

from __future__ import annotations

import atexit
import os
import socket

import MySQLdb

DEFAULT_URL = "mysql-pooled://root@127.0.0.1:3306/dmp"


class NoServerError(RuntimeError):
    """No MySQL/MariaDB server could be found or started."""


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def docker_available() -> bool:
    """Whether a Docker engine answers (not just the ``docker`` client)."""
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=2).ping()
    except Exception:
        return False
    return True


def _start_container() -> str:  # pragma: no cover - needs a Docker engine
    from testcontainers.mysql import MySqlContainer

    container = MySqlContainer("mysql:8.0", username="root", password="test", dbname="dmp")
    container.start()
    atexit.register(container.stop)
    host = container.get_container_host_ip()
    port = container.get_exposed_port(3306)
    return f"mysql-pooled://root:test@{host}:{port}/dmp"


def find_server_url() -> str:
    """Return a ``mysql-pooled://`` URL of a reachable server.

    :raises NoServerError: with instructions, when none can be found.
    """
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    if _port_open("127.0.0.1", 3306):
        return DEFAULT_URL
    if docker_available():  # pragma: no cover - no Docker engine on CI
        return _start_container()
    raise NoServerError(
        "No MySQL/MariaDB server: set DATABASE_URL (e.g. mysql-pooled://user:pass@host:3306/db), "
        "start one on 127.0.0.1:3306 (Debian: apt-get install mariadb-server, then "
        "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd), "
        "or run a Docker engine so testcontainers can start mysql:8.0."
    )


def admin_connect(settings_dict: dict[str, object], **kwargs: object) -> MySQLdb.Connection:
    """Open a plain (unpooled) connection with the credentials of *settings_dict*."""
    params: dict[str, object] = {"user": settings_dict["USER"], "charset": "utf8mb4"}
    if settings_dict.get("PASSWORD"):
        params["password"] = settings_dict["PASSWORD"]
    host = str(settings_dict.get("HOST") or "127.0.0.1")
    if host.startswith("/"):
        params["unix_socket"] = host
    else:
        params["host"] = host
        params["port"] = int(str(settings_dict.get("PORT") or 3306))
    params.update(kwargs)
    return MySQLdb.connect(**params)
