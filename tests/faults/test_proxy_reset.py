"""A target that answers ``COM_RESET_CONNECTION`` without resetting the session (Vitess does).

The fault proxy plays that target (``Proxy.fake_reset``: it answers the
command with OK and never forwards it). The pool must notice on each
connection's first reset, never hand such a session to another checkout,
and close connections at checkin from then on (the reconnect rung).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import DrainingWrapper
from tests.faults.conftest import PoolTargetFactory
from tests.faults.mariadb import requires_mariadbd
from tests.faults.proxy import Proxy

pytestmark = [requires_mariadbd, pytest.mark.timeout(120)]


def scalar(db: Any, sql: str) -> Any:
    with db.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


def test_a_reset_that_does_not_reset_is_caught_and_the_session_never_reused(
    proxy: Proxy, pool_target: PoolTargetFactory, caplog: pytest.LogCaptureFixture
) -> None:
    target = pool_target({"max_size": 1, "timeout": 5.0}, via=proxy)
    proxy.fake_reset = True
    with caplog.at_level(logging.WARNING, logger="django_mysql_pooled"):
        for round_number in range(3):
            db = DrainingWrapper(target.settings, target.alias)
            assert scalar(db, "SELECT @leak") is None, f"round {round_number}: another checkout's variable"
            first_id = scalar(db, "SELECT CONNECTION_ID()")
            scalar(db, "SELECT @leak := 'secret'")
            db.close()
            again = DrainingWrapper(target.settings, target.alias)
            assert scalar(again, "SELECT CONNECTION_ID()") != first_id  # a new connection, not the unreset one
            again.close()
    stats = target.stats()
    assert stats["connections_num"] == 6 and stats["resets_num"] == 0 and stats["resets_failed"] == 6
    warnings = [r for r in caplog.records if r.name == "django_mysql_pooled.session.restore"]
    assert len(warnings) == 1  # once per pool, not per connection


def test_a_real_reset_is_verified_once_per_connection(proxy: Proxy, pool_target: PoolTargetFactory) -> None:
    target = pool_target({"max_size": 1, "timeout": 5.0}, via=proxy)
    for _ in range(3):
        db = DrainingWrapper(target.settings, target.alias)
        scalar(db, "SELECT @leak := 'secret'")
        db.close()
    db = DrainingWrapper(target.settings, target.alias)
    assert scalar(db, "SELECT @leak") is None
    assert scalar(db, "SELECT @__dmp_reset_probe") is None  # the probe never reaches a checkout
    db.close()
    stats = target.stats()
    assert (stats["connections_num"], stats["resets_num"], stats["resets_failed"]) == (1, 4, 0)
