"""A checkout's connect path (base.py) against the stock backend opening a new connection each time.

The pooled wrapper skips work at a checkout when it provably changes nothing:
``get_connection_params()`` reuses the pool's parameters while the server
settings are unchanged, and ``connect()``'s ``set_autocommit()`` sends nothing
for a session the reset just restored. These tests drive both wrappers
through the same checkouts (what each leaves behind, a setting changed in
place between them) and compare what Django and the server then say: the
stock wrapper with ``CONN_MAX_AGE=0`` gets a new connection every time, the
oracle of what a checkout must look like.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import WrapperFactory


def _state(db: Any) -> tuple[Any, ...]:
    """What a checkout looks like: Django's autocommit, the client's flag, the server's, isolation,
    schema; then Django's commit-hooks flag and whether Django logged a ``BEGIN`` (AUTOCOMMIT False)."""
    db.force_debug_cursor = True  # connection.queries, as with DEBUG = True
    db.queries_log.clear()
    with db.cursor() as cursor:
        cursor.execute("SELECT @@SESSION.autocommit, @@SESSION.tx_isolation, DATABASE()")
        server = cursor.fetchone()
    # (not every statement: the stock backend's isolation-level SET is in the reset's batch instead)
    began = any(query["sql"] == "BEGIN" for query in db.queries)
    return (
        db.get_autocommit(),
        bool(db.connection.get_autocommit()),
        *server,
        db.run_commit_hooks_on_set_autocommit_on,
        began,
    )


def _checkout(db: Any, leave: str) -> tuple[Any, ...]:
    """One request: look at the session, leave *leave* behind, return the connection."""
    state = _state(db)
    if leave == "autocommit flipped":
        db.set_autocommit(not db.get_autocommit())
    elif leave == "autocommit flipped by SQL":
        with db.cursor() as cursor:
            cursor.execute(f"SET autocommit = {0 if db.get_autocommit() else 1}")
    elif leave == "committed":  # Django then runs (and clears) commit hooks at the next set_autocommit(True)
        db.commit()
    elif leave == "isolation changed":
        with db.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    db.close()
    return state


LEFT_BEHIND = ["nothing", "autocommit flipped", "autocommit flipped by SQL", "committed", "isolation changed"]


@pytest.mark.parametrize("autocommit", [True, False])
@pytest.mark.parametrize("reset", [True, "checkout", False])
def test_every_checkout_starts_as_a_new_connection(
    pooled: WrapperFactory, stock: WrapperFactory, autocommit: bool, reset: Any
) -> None:
    db: Any = pooled({"max_size": 1, "reset": reset}, AUTOCOMMIT=autocommit)
    oracle: Any = stock(CONN_MAX_AGE=0, AUTOCOMMIT=autocommit)
    for leave in LEFT_BEHIND * 2:
        expected, got = _checkout(oracle, leave), _checkout(db, leave)
        if reset is False:  # the session is kept as left (W001), but Django's connect() sets autocommit
            expected, got = expected[:3] + expected[5:], got[:3] + got[5:]
        assert got == expected, leave
    if reset is not False:
        assert db.pool.get_stats()["connections_num"] == 1  # one server connection, reused


def test_settings_changed_in_place_are_seen_by_the_next_checkout(pooled: WrapperFactory) -> None:
    """A setting changed on the same dicts (as test runners do) is not hidden by the reused parameters."""
    db: Any = pooled({"max_size": 2}, OPTIONS={"isolation_level": "read committed"})
    assert _checkout(db, "nothing")[3] == "READ-COMMITTED"
    db.settings_dict["OPTIONS"]["isolation_level"] = "serializable"  # same OPTIONS object
    assert _checkout(db, "nothing")[3] == "SERIALIZABLE"
    db.settings_dict["OPTIONS"] = {**db.settings_dict["OPTIONS"], "isolation_level": "read committed"}
    assert _checkout(db, "nothing")[3] == "READ-COMMITTED"
    name = db.settings_dict["NAME"]
    db.settings_dict["NAME"] = "no_such_database_dmp"  # another server setting: not the pool's any more
    try:
        with pytest.raises(Exception, match="no_such_database_dmp"):
            _checkout(db, "nothing")  # connects on its own, unpooled, and fails as the stock backend
    finally:
        db.settings_dict["NAME"] = name
    assert _checkout(db, "nothing")[4] == name  # back to the pool's settings: pooled again
