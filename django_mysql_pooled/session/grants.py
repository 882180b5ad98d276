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

from collections.abc import Iterable, Sequence
from operator import itemgetter
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
    text = "\n" + "\n".join(map(itemgetter(0), grants)) + "\n"  # searched at C speed: every checkin
    start = text.find("\n" + _SET_DEFAULT) + 1  # MariaDB prints it last; 0 when there is none
    if not start:
        return None
    role, end = _identifier(text, start + len(_SET_DEFAULT))
    if not text.startswith(" FOR ", end):
        raise ResetFailed(0, f"cannot read the default role from SHOW GRANTS: {text[start:end]!r}")
    account = text[end + len(" FOR ") : text.find("\n", end)]
    granted = f"\nGRANT {text[start + len(_SET_DEFAULT) : end]} TO {account}"
    if granted + "\n" in text or granted + " " in text:  # (" WITH ADMIN OPTION")
        return role
    return None  # no longer granted: a new session starts without it


def _identifier(line: str, start: int) -> tuple[str, int]:
    """The identifier at *start* of *line* (unquoted) and the index right after it.

    :raises ResetFailed: an unterminated quoted identifier.
    """
    quote = line[start : start + 1]
    if quote not in ("`", '"'):
        end, newline = line.find(" ", start), line.find("\n", start)
        if end < 0 or 0 <= newline < end:
            end = newline  # an unquoted identifier ends the line
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
