"""``OPTIONS["pool"]["credentials"]`` on a private server: rotation under load, failures, no leak of the secret.

The pool's settings carry no password at all: every login (new connection,
``COM_CHANGE_USER``) must come from the provider.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import MySQLdb
import pytest
from django.db import OperationalError
from django.test import override_settings

from django_mysql_pooled import CredentialsError
from tests.faults.conftest import Clients, PoolTarget, PoolTargetFactory, wait_until
from tests.faults.mariadb import DATABASE, PrivateMariaDB, requires_mariadbd

pytestmark = [requires_mariadbd, pytest.mark.django_db(transaction=True)]

ROTATING_USER = "rotating"
#: Recognisable in any text it might leak into.
SECRETS = ("Secret-One-7f3a", "Secret-Two-9c1e")


class Rotating:
    """A provider whose secret can be rotated on the server atomically with what it hands out."""

    def __init__(self, server: PrivateMariaDB) -> None:
        self.server = server
        self.secret = SECRETS[0]
        self.lock = threading.Lock()
        self.handed: list[tuple[float, str]] = []
        self.fail: Exception | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Rotating:
        return self  # Django deep-copies settings (connection.copy()): one provider for all copies

    def __call__(self) -> dict[str, str]:
        with self.lock:
            if self.fail is not None:
                raise self.fail
            self.handed.append((time.monotonic(), self.secret))
            return {"user": ROTATING_USER, "password": self.secret}

    def rotate(self, new: str) -> float:
        """``ALTER USER`` to *new* and hand out *new* from now on; return when."""
        with self.lock:
            admin = self.server.connect()
            try:
                admin.cursor().execute(f"ALTER USER '{ROTATING_USER}'@'127.0.0.1' IDENTIFIED BY '{new}'")
            finally:
                admin.close()
            self.secret = new
            return time.monotonic()


@pytest.fixture
def provider(private_server: PrivateMariaDB) -> Iterator[Rotating]:
    admin = private_server.connect()
    cursor = admin.cursor()
    cursor.execute(f"DROP USER IF EXISTS '{ROTATING_USER}'@'127.0.0.1'")
    cursor.execute(f"CREATE USER '{ROTATING_USER}'@'127.0.0.1' IDENTIFIED BY '{SECRETS[0]}'")
    cursor.execute(f"GRANT ALL ON `{DATABASE}`.* TO '{ROTATING_USER}'@'127.0.0.1'")
    yield Rotating(private_server)
    cursor.execute(f"DROP USER IF EXISTS '{ROTATING_USER}'@'127.0.0.1'")  # its sessions stay until killed
    admin.close()


def target_with(pool_target: PoolTargetFactory, provider: Any, **pool: Any) -> PoolTarget:
    target = pool_target({**pool, "credentials": provider})
    # No static secret: only the provider can log in (an empty USER would make mysqlclient
    # log in as the operating system's user: root, without a password, on the private server).
    target.settings.update(USER=ROTATING_USER, PASSWORD="")
    return target


def query(db: Any, sql: str) -> Any:
    with db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()


def test_the_provider_logs_in_every_new_connection_and_change_user(
    pool_target: PoolTargetFactory, provider: Rotating
) -> None:
    db: Any = target_with(pool_target, provider, max_size=1).wrapper()
    assert query(db, "SELECT SUBSTRING_INDEX(USER(), '@', 1)") == (ROTATING_USER,)
    db.close()
    assert len(provider.handed) == 1  # COM_RESET_CONNECTION at checkin: no new login
    db.pool.restorer.use_reset_connection = False  # the change_user rung
    query(db, "SELECT 1")
    db.close()
    assert len(provider.handed) == 2 and db.pool.get_stats()["resets_change_user"] == 1


def test_password_rotation_under_load(
    pool_target: PoolTargetFactory, provider: Rotating, private_server: PrivateMariaDB, figures: Any
) -> None:
    ids: dict[str, list[tuple[float, int]]] = {"long": [], "short": []}

    def work(kind: str) -> Any:
        def run(db: Any, client: int, seq: int) -> None:
            (conn_id,) = query(db, "SELECT CONNECTION_ID()")
            ids[kind].append((time.monotonic(), int(conn_id)))

        return run

    # Long-lived connections (must keep working) and short-lived ones (new logins all the time).
    long = target_with(pool_target, provider, max_size=2)
    short = target_with(pool_target, provider, max_size=3, max_lifetime=0.2)
    with Clients(long, 2, work("long")) as long_clients, Clients(short, 3, work("short")) as short_clients:
        long_clients.wait_for_successes(20)
        short_clients.wait_for_successes(20)
        wait_until(lambda: short.stats()["connections_num"] >= 5, 30, "the short-lived pool did not recycle")
        rotated = provider.rotate(SECRETS[1])
        logins_at_rotation = short.stats()["connections_num"]
        wait_until(lambda: short.stats()["connections_num"] >= logins_at_rotation + 10, 30, "no new logins")
        before = {i for t, i in ids["long"] if t < rotated}
        wait_until(lambda: len([i for t, i in ids["long"] if t > rotated]) >= 20, 30, "long-lived pool stalled")
    after = {i for t, i in ids["long"] if t > rotated}
    assert long_clients.errors() == [] and short_clients.errors() == []
    assert after and after <= before  # connections logged in with the old secret keep serving
    handed_after = [secret for t, secret in provider.handed if t > rotated]
    assert handed_after and set(handed_after) == {SECRETS[1]}
    with pytest.raises(MySQLdb.OperationalError, match="Access denied"):  # the old secret is dead
        private_server.connect(user=ROTATING_USER, password=SECRETS[0])
    figures(
        logins_after_rotation=short.stats()["connections_num"] - logins_at_rotation,
        long_lived_ids=sorted(after),
        connections_errors=short.stats().get("connections_errors", 0),
    )


def test_a_login_racing_the_rotation_retries_with_the_new_secret(
    pool_target: PoolTargetFactory, provider: Rotating
) -> None:
    stale = iter([{"user": ROTATING_USER, "password": SECRETS[0]}])

    def racing() -> dict[str, str]:  # handed the old secret just before the server stopped taking it
        return next(stale, None) or provider()

    db: Any = target_with(pool_target, racing, max_size=1).wrapper()
    provider.rotate(SECRETS[1])
    assert query(db, "SELECT 1") == (1,)
    db.close()
    assert db.pool.get_stats()["connections_num"] == 1


@pytest.mark.parametrize("failure", ["raises", "wrong shape"])
def test_a_failing_provider_names_the_alias_and_option(
    pool_target: PoolTargetFactory, provider: Rotating, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    if failure == "raises":
        provider.fail = RuntimeError(f"vault said no; {SECRETS[0]}")
        db: Any = target_with(pool_target, provider, max_size=1, timeout=2).wrapper()
    else:
        db = target_with(pool_target, lambda: {"pass": SECRETS[0]}, max_size=1, timeout=2).wrapper()
    with pytest.raises(OperationalError) as excinfo:
        db.ensure_connection()
    message = str(excinfo.value)
    assert f"DATABASES[{db.alias!r}]['OPTIONS']['pool']['credentials']" in message
    assert ("raised RuntimeError" if failure == "raises" else "returned the keys ['pass']") in message
    assert isinstance(excinfo.value.__cause__, CredentialsError)
    assert SECRETS[0] not in message and SECRETS[0] not in repr(excinfo.value)
    stats = db.pool.get_stats()  # no half-built pool: no slot held, the next checkout starts afresh
    assert (stats["pool_size"], stats["connections_in_use"], stats["connections_errors"]) == (0, 0, 1)
    if failure == "raises":
        provider.fail = None
        assert query(db, "SELECT 1") == (1,)
        db.close()


def test_the_secret_is_never_logged_nor_published(
    pool_target: PoolTargetFactory, provider: Rotating, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stats_dir = tmp_path / "stats"
    with override_settings(DJANGO_MYSQL_POOLED_STATS_DIR=str(stats_dir)), caplog.at_level(logging.DEBUG):
        target = target_with(pool_target, provider, max_size=2, min_size=1)
        db: Any = target.wrapper()
        query(db, "SELECT 1")
        db.close()
        provider.rotate(SECRETS[1])  # the idle connection keeps the old login; a refill needs the new one
        db.pool.restorer.use_reset_connection = False
        query(db, "SELECT 1")
        db.close()
        provider.fail = RuntimeError(SECRETS[1])  # maintenance refilling min_size logs its failures
        # This pool's snapshot (pools other tests left open may publish into the directory too).
        mine = f"*-{quote(target.alias, safe='')}.json"
        wait_until(lambda: list(stats_dir.glob(mine)) != [], 10, "no snapshot published")
        snapshot = next(stats_dir.glob(mine)).read_text()
    assert json.loads(snapshot)["options"]["credentials"] is True
    texts = [snapshot, *(r.getMessage() for r in caplog.records), *(repr(r.args) for r in caplog.records)]
    texts += [repr(db.pool), repr(db.pool.config), repr(vars(db.pool.config))]
    leaked = [t for t in texts if any(secret in t for secret in SECRETS)]
    assert leaked == []


def test_kill_query_logs_in_with_the_provider(pool_target: PoolTargetFactory, provider: Rotating) -> None:
    from django_mysql_pooled import CancelToken, QueryCancelled
    from django_mysql_pooled.cancel.scope import cancel_scope

    db: Any = target_with(pool_target, provider, max_size=1).wrapper()
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    # No timeout, so no server-side limit: only the killer's KILL QUERY can stop SLEEP(3).
    with pytest.raises(QueryCancelled), cancel_scope(db, token=token), db.cursor() as cursor:
        cursor.execute("SELECT SLEEP(3)")
    db.close()
    assert db.pool.get_stats().get("kills_sent", 0) == 1
