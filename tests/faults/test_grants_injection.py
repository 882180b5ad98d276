"""SHOW GRANTS parsing (session/grants.py): a tenant-chosen identifier must never be read as the
account's SET DEFAULT ROLE line (security review F-1: the parser searched the rows' joined text
for "\\nSET DEFAULT ROLE ", and table and column names may contain newlines).

A tenant's request with GRANT OPTION on its own schema puts an identifier of its choosing
into SHOW GRANTS: "GRANT SELECT ON db.`<name>` TO CURRENT_USER" (a table) or
"GRANT SELECT (`<name>`) ON db.t TO CURRENT_USER" (a column); table and column names may
contain newlines. (Routine names would too, via automatic_sp_privileges, but the server
stores them lower-cased, which the case-sensitive search happens not to match.)

The planted text names a role granted to the account but not its default (or not granted:
then every checkin's SET ROLE fails and the pool closes every connection it is returned).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.conftest import PoolTarget, PoolTargetFactory
from tests.faults.mariadb import DATABASE, PrivateMariaDB, requires_mariadbd
from tests.faults.test_server_globals import ACCOUNT, new_session_role, root, scalar

pytestmark = requires_mariadbd

ROLE = "dmp_adm"
# <= 64 characters, no trailing whitespace (the server refuses those); " y": the parser accepts
# "GRANT <role> TO <account>" followed by a space (meant for " WITH ADMIN OPTION")
NAME = f"x\nSET DEFAULT ROLE {ROLE} FOR z\nGRANT {ROLE} TO z y"


@pytest.fixture
def target(private_server: PrivateMariaDB, pool_target: PoolTargetFactory) -> Iterator[PoolTarget]:
    root(
        private_server,
        f"CREATE ROLE IF NOT EXISTS {ROLE}",
        f"GRANT SELECT ON mysql.* TO {ROLE}",
        f"GRANT {ROLE} TO {ACCOUNT}",  # granted, NOT the default: a new session has no role
    )
    yield pool_target({"max_size": 1})
    root(
        private_server,
        f"DROP TABLE IF EXISTS {DATABASE}.`{NAME}`",
        f"DROP TABLE IF EXISTS {DATABASE}.dmp_rev_t",
        f"DROP ROLE IF EXISTS {ROLE}",
        f"SET DEFAULT ROLE NONE FOR {ACCOUNT}",
        f"REVOKE ALL PRIVILEGES, GRANT OPTION FROM {ACCOUNT}",
        f"GRANT ALL ON `{DATABASE}`.* TO {ACCOUNT}",
        "FLUSH PRIVILEGES",
    )


def _assert_next_checkout_is_like_a_new_connection(server: PrivateMariaDB, db: Any) -> None:
    assert new_session_role(server) is None  # the oracle: a new connection starts with no role
    assert scalar(db, "SELECT CURRENT_ROLE()") is None  # fails: 'dmp_adm', in every later checkout
    db.close()


PLANTING = {
    "column": [f"CREATE TABLE dmp_rev_t (`{NAME}` INT)", f"GRANT SELECT (`{NAME}`) ON dmp_rev_t TO CURRENT_USER"],
    "table": [f"CREATE TABLE `{NAME}` (v INT)", f"GRANT SELECT ON `{NAME}` TO CURRENT_USER"],
}


@pytest.mark.parametrize("grant", sorted(PLANTING))
def test_a_planted_grant_does_not_choose_the_next_checkouts_role(
    private_server: PrivateMariaDB, target: PoolTarget, grant: str
) -> None:
    root(private_server, f"GRANT ALL ON `{DATABASE}`.* TO {ACCOUNT} WITH GRANT OPTION")
    db = target.wrapper()
    with db.cursor() as cursor:  # one tenant request, GRANT OPTION on its own schema
        for sql in PLANTING[grant]:
            cursor.execute(sql)
    db.close()
    _assert_next_checkout_is_like_a_new_connection(private_server, db)


def test_an_ungranted_planted_role_does_not_close_every_connection(
    private_server: PrivateMariaDB, target: PoolTarget
) -> None:
    root(private_server, f"REVOKE {ROLE} FROM {ACCOUNT}", f"GRANT ALL ON `{DATABASE}`.* TO {ACCOUNT} WITH GRANT OPTION")
    db = target.wrapper()
    first = scalar(db, "SELECT CONNECTION_ID()")
    with db.cursor() as cursor:
        cursor.execute(f"CREATE TABLE `{NAME}` (v INT)")
        cursor.execute(f"GRANT SELECT ON `{NAME}` TO CURRENT_USER")
    db.close()
    ids = set()
    for _ in range(3):
        ids.add(scalar(db, "SELECT CONNECTION_ID()"))
        db.close()
    assert ids == {first}  # fails: a new connection per request (each checkin's SET ROLE fails)
