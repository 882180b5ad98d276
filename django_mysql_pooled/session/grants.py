"""The role a new MariaDB session of an account starts with, read from ``SHOW GRANTS``.

MariaDB activates the account's default role at login, if that role is still
granted to the account: ``SET DEFAULT ROLE r FOR u`` survives
``REVOKE r FROM u``, and a session then starts with no role (both measured on
MariaDB 10.11). ``SHOW GRANTS`` lists the grant (``GRANT `r` TO `u`@`%```)
and the default (``SET DEFAULT ROLE `r` FOR `u`@`%```, its last line), so
:func:`default_role` reads both from it.

The restore batch used ``information_schema.APPLICABLE_ROLES`` (and
``information_schema.PROFILING``) subqueries before: each builds a temporary
table, and together they cost the server about 40 us of CPU per checkin (64
against 24 us for the batch without them; ``SHOW GRANTS`` and ``SHOW
PROFILES`` add about 2 us; private MariaDB 10.11 on 2 cores, server CPU from
``/proc``). The lines quote identifiers as the session's settings say:
backticks, double quotes under ``ANSI_QUOTES``, none where none are needed
with ``sql_quote_show_create = OFF``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Final

from django_mysql_pooled.session.native import ResetFailed

__all__ = ["default_role"]

_SET_DEFAULT: Final = "SET DEFAULT ROLE "


def default_role(grants: Iterable[Sequence[str]]) -> str | None:
    """The default role a new session of this account activates, or ``None``.

    :param grants: the rows of ``SHOW GRANTS`` (one line each).
    :raises ResetFailed: a ``SET DEFAULT ROLE`` line that does not parse (the
        connection is then closed rather than guessed about).
    """
    # Every checkin of a pool reads the same rows: the answer is remembered per rows (a pure
    # function of them; a failure is not remembered). A few accounts per process: 16 is plenty.
    return _default_role(grants if isinstance(grants, tuple) else tuple(map(tuple, grants)))


@functools.lru_cache(maxsize=16)
def _default_role(grants: tuple[Sequence[str], ...]) -> str | None:
    # Row by row, never their joined text: table and column names in other rows may contain
    # newlines, and a tenant with GRANT OPTION on its schema chooses some (security review F-1).
    # Only MariaDB's own line starts a row with SET DEFAULT ROLE (it prints it last).
    lines = [row[0] for row in grants]
    line = next((other for other in reversed(lines) if other.startswith(_SET_DEFAULT)), None)
    if line is None:
        return None
    role, end = _identifier(line, len(_SET_DEFAULT))
    if not line.startswith(" FOR ", end):
        raise ResetFailed(0, f"cannot read the default role from SHOW GRANTS: {line!r}")
    granted = f"GRANT {line[len(_SET_DEFAULT) : end]} TO {line[end + len(' FOR ') :]}"
    if granted in lines or granted + " WITH ADMIN OPTION" in lines:  # whole rows
        return role
    return None  # no longer granted: a new session starts without it


def _identifier(line: str, start: int) -> tuple[str, int]:
    """The identifier at *start* of *line* (unquoted) and the index right after it.

    :raises ResetFailed: an unterminated quoted identifier.
    """
    quote = line[start : start + 1]
    if quote not in ("`", '"'):
        end = line.find(" ", start)  # (an unquoted identifier has no space, and no newline)
        if end <= start:
            raise ResetFailed(0, f"cannot read the default role from SHOW GRANTS: {line!r}")
        return line[start:end], end
    parts, position = [], start + 1
    while True:
        close = line.find(quote, position)
        if close < 0:
            raise ResetFailed(0, f"cannot read the default role from SHOW GRANTS: {line!r}")
        parts.append(line[position:close])
        if not line.startswith(quote, close + 1):
            return "".join(parts), close + 1
        parts.append(quote)  # a doubled quote stands for one
        position = close + 2
