"""TLS end to end: a private ``mariadbd`` that refuses every TCP connection without TLS.

The certificates are made by the test (``openssl``, :mod:`tests.faults.tls`);
the pool connects with ``OPTIONS["ssl"]`` and ``ssl_mode = VERIFY_IDENTITY``.
Every rung of the reset ladder keeps the session encrypted, and a
``KILL QUERY`` gets through: the killer's own connection must use TLS too.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import MySQLdb
import pytest
from django.db import connections

from django_mysql_pooled import CancelToken, QueryCancelled
from django_mysql_pooled.base import DatabaseWrapper as PooledWrapper
from django_mysql_pooled.cancel.scope import cancel_scope
from django_mysql_pooled.pool import registry
from tests.conftest import DrainingWrapper
from tests.faults.mariadb import DATABASE, PASSWORD, USER, PrivateMariaDB, requires_mariadbd, running_or_skip
from tests.faults.tls import Certificates, make_certificates, tls_server_options

pytestmark = [requires_mariadbd, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[PrivateMariaDB]:
    """A private server with ``require_secure_transport = ON`` (its own data directory)."""
    server = PrivateMariaDB(
        tmp_path_factory.mktemp("mariadb-tls"),
        server_options=tls_server_options(certs),
        client_options={"ssl": {"ca": str(certs.ca)}, "ssl_mode": "VERIFY_IDENTITY"},
    )
    with running_or_skip(server, "the private TLS MariaDB server") as started:
        yield started


@pytest.fixture
def tls_wrapper(tls_server: PrivateMariaDB, certs: Certificates, django_db_blocker: Any) -> Iterator[Any]:
    """``tls_wrapper(pool)``: a pooled wrapper of a new alias on the TLS server (pools closed at the end)."""
    made: list[PooledWrapper] = []

    def make(pool: Any) -> PooledWrapper:
        settings = copy.deepcopy(connections["default"].settings_dict)
        settings.update(
            NAME=DATABASE,
            USER=USER,
            PASSWORD=PASSWORD,
            HOST=tls_server.host,
            PORT=str(tls_server.port),
            CONN_MAX_AGE=0,
            OPTIONS={"ssl": {"ca": str(certs.ca)}, "ssl_mode": "VERIFY_IDENTITY", "pool": pool},
        )
        wrapper = DrainingWrapper(settings, f"tls{len(made)}-{id(make)}")  # stats read right after close()
        made.append(wrapper)
        return wrapper

    with django_db_blocker.unblock():
        yield make
        for wrapper in made:
            wrapper.close()
            pool = registry.remove_pool(wrapper.alias)
            if pool is not None:
                pool.close()
    tls_server.restore()


def session(db: Any) -> tuple[int, str, Any]:
    """(connection id, TLS cipher, @marker) of the checkout *db* holds (checking one out if needed)."""
    with db.cursor() as cursor:
        cursor.execute("SELECT CONNECTION_ID(), @marker")
        conn_id, marker = cursor.fetchone()
        cursor.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        cipher = cursor.fetchone()[1]
    return int(conn_id), cipher, marker


def mark(db: Any) -> None:
    with db.cursor() as cursor:
        cursor.execute("SET @marker = 1")


def test_the_server_refuses_connections_without_tls(tls_server: PrivateMariaDB, certs: Certificates) -> None:
    with pytest.raises(MySQLdb.OperationalError):
        MySQLdb.connect(host=tls_server.host, port=tls_server.port, user=USER, password=PASSWORD, connect_timeout=5)
    with pytest.raises(MySQLdb.OperationalError, match="certificate"):  # the server's certificate is verified
        MySQLdb.connect(
            host=tls_server.host,
            port=tls_server.port,
            user=USER,
            password=PASSWORD,
            connect_timeout=5,
            ssl_mode="VERIFY_IDENTITY",
            ssl={"ca": "/etc/ssl/certs/ca-certificates.crt"},
        )


def test_reset_connection_rung_keeps_tls(tls_wrapper: Any) -> None:
    db = tls_wrapper({"max_size": 1})
    first, cipher, _ = session(db)
    mark(db)
    db.close()
    assert session(db) == (first, cipher, None)  # same connection, reset, still encrypted
    db.close()
    assert cipher and db.pool.get_stats()["resets_reset_connection"] == 2


def test_change_user_rung_over_tls(tls_wrapper: Any) -> None:
    db = tls_wrapper({"max_size": 1})
    first, cipher, _ = session(db)
    mark(db)
    db.pool.restorer.use_reset_connection = False  # as after a 1047 from a proxy
    db.close()
    assert session(db) == (first, cipher, None)
    db.close()
    stats = db.pool.get_stats()
    assert cipher and (stats["resets_change_user"], stats["resets_reset_connection"]) == (2, 0)


def test_reconnect_rung_over_tls(tls_wrapper: Any, tls_server: PrivateMariaDB) -> None:
    db = tls_wrapper({"max_size": 1, "reset": "checkout"})
    first, _, _ = session(db)
    db.close()
    db.pool.restorer.use_reset_connection = False
    tls_server.connect().cursor().execute(f"KILL CONNECTION {first}")  # change_user will fail
    second, cipher, marker = session(db)
    db.close()
    assert second != first and cipher and marker is None
    stats = db.pool.get_stats()
    assert (stats["resets_failed"], stats["resets_reconnect"]) == (1, 1)


def test_kill_query_when_tls_is_required(tls_wrapper: Any, tls_server: PrivateMariaDB) -> None:
    db = tls_wrapper({"max_size": 1})
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    # No timeout: no server-side limit either; only the killer's KILL QUERY can stop SLEEP(10).
    with pytest.raises(QueryCancelled, match="CancelToken") as info, cancel_scope(db, token=token), db.cursor() as cur:
        cur.execute("SELECT SLEEP(10)")
    assert info.value.connection_id is not None
    assert db.pool.get_stats().get("kills_sent", 0) == 1
    assert session(db)[1]  # the connection is still usable, still encrypted
    db.close()


def test_certificates_are_from_this_run(certs: Certificates) -> None:
    assert all(Path(p).stat().st_size > 0 for p in (certs.ca, certs.server_cert, certs.server_key))
