"""Reading the default role from SHOW GRANTS (session/grants.py), on lines a MariaDB 10.11 server printed.

The lines below were printed by ``SHOW GRANTS`` for account ``u``@``%``
with roles ``r1``, ``r2`` and ``we`ird FOR x`` granted, in the three quoting
styles (default, ``sql_quote_show_create = 0``, ``ANSI_QUOTES``), and after
``REVOKE r1`` with ``r1`` still the default. The same cases run against a real
server, compared with a new connection, in ``tests/faults/test_server_globals.py``.
"""

from __future__ import annotations

import pytest

from django_mysql_pooled.session.grants import default_role
from django_mysql_pooled.session.native import ResetFailed

PASSWORD = "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*7B9EBEED26AA52ED10C0F549FA863F13C39E0209'"


DEFAULT_R1 = "SET DEFAULT ROLE `r1` FOR `u`@`%`"
PLANTED = "x\nSET DEFAULT ROLE r1 FOR z\nGRANT r1 TO z y"  # a table name a tenant chose


def rows(*lines: str) -> list[tuple[str]]:
    return [(line,) for line in lines]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (rows("GRANT `r1` TO `u`@`%`", PASSWORD, "GRANT SELECT ON `app`.* TO `u`@`%`"), None),
        (rows("GRANT `r1` TO `u`@`%`", PASSWORD, "GRANT USAGE ON *.* TO `r1`", DEFAULT_R1), "r1"),
        (
            rows("GRANT r1 TO u@`%`", "GRANT r2 TO u@`%`", "GRANT USAGE ON *.* TO r2", "SET DEFAULT ROLE r1 FOR u@`%`"),
            "r1",
        ),
        (rows('GRANT r1 TO u@"%"', 'GRANT "we`ird FOR x" TO u@"%"', 'SET DEFAULT ROLE r1 FOR u@"%"'), "r1"),
        (rows("GRANT `we``ird FOR x` TO `u`@`%`", "SET DEFAULT ROLE `we``ird FOR x` FOR `u`@`%`"), "we`ird FOR x"),
        (rows('GRANT "we""ird" TO u@"%"', 'SET DEFAULT ROLE "we""ird" FOR u@"%"'), 'we"ird'),
        (rows("GRANT `r1` TO `u`@`%` WITH ADMIN OPTION", "SET DEFAULT ROLE `r1` FOR `u`@`%`"), "r1"),
        # REVOKE r1 FROM u keeps the default: a new session starts with no role.
        (rows("GRANT `r2` TO `u`@`%`", PASSWORD, "SET DEFAULT ROLE `r1` FOR `u`@`%`"), None),
        # granted to the active role r2, not to the account: not a grant the login uses
        (rows("GRANT `r2` TO `u`@`%`", "GRANT `r1` TO `r2`", "SET DEFAULT ROLE `r1` FOR `u`@`%`"), None),
        # rows a tenant with GRANT OPTION on its schema can add: names with newlines (review F-1)
        (rows(f"GRANT SELECT ON `app`.`{PLANTED}` TO `u`@`%`", "GRANT `r1` TO `u`@`%`"), None),
        (rows("GRANT `r2` TO `u`@`%`", "GRANT SELECT (`c\nGRANT `r1` TO `u`@`%`\n`) ON t TO u", DEFAULT_R1), None),
        # granted to another account of the same user name
        (rows("GRANT `r1` TO `u`@`localhost`", "SET DEFAULT ROLE `r1` FOR `u`@`%`"), None),
    ],
)
def test_default_role(lines: list[tuple[str]], expected: str | None) -> None:
    assert default_role(lines) == expected


@pytest.mark.parametrize(
    "line", ["SET DEFAULT ROLE `r1", "SET DEFAULT ROLE `r1` TO `u`@`%`", "SET DEFAULT ROLE r1", "SET DEFAULT ROLE "]
)
def test_a_line_that_does_not_parse_fails_closed(line: str) -> None:
    with pytest.raises(ResetFailed, match="default role"):
        default_role(rows("GRANT `r1` TO `u`@`%`", line))
