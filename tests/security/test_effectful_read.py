"""Security review (sec-review): a SELECT with side effects is treated as a read.

``hook.py`` classifies by the first keyword: a statement starting with
``SELECT``/``WITH`` is a read, and a read that completes after its deadline
(or after a kill that arrived late) raises :exc:`QueryCancelled`, its value
deemed suspect. A ``SELECT`` that calls a stored function which writes
(``MODIFIES SQL DATA``), ``NEXTVAL()``, ``GET_LOCK()``, ``SELECT ... INTO
OUTFILE``, or MySQL 8's ``WITH ... UPDATE/DELETE``, has committed (autocommit)
by then: the caller is told it was cancelled and a retry applies it twice.

The window is the time between the deadline and the server's interruption
(its own limit or our KILL). The test widens it deterministically by turning
both off (the switches the suite itself uses): the statement completes just
after the deadline, as it can under any timing.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_mysql_pooled import QueryCancelled
from django_mysql_pooled.cancel import scope as scope_module
from django_mysql_pooled.cancel.scope import cancel_scope


def test_a_read_that_completed_past_its_deadline_says_so(pooled: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scope_module._Hook, "_with_server_limit", lambda self, raw, sql: sql)
    monkeypatch.setattr(scope_module, "_client_kill_enabled", False)
    db = pooled({"max_size": 1}, alias="sec_effectful")
    with db.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS sec_ledger (id INT AUTO_INCREMENT PRIMARY KEY) ENGINE=InnoDB")
        cursor.execute("DROP FUNCTION IF EXISTS sec_charge")
        cursor.execute(
            "CREATE FUNCTION sec_charge() RETURNS INT MODIFIES SQL DATA "
            "BEGIN DO SLEEP(0.5); INSERT INTO sec_ledger VALUES (NULL); RETURN LAST_INSERT_ID(); END"
        )
        cursor.execute("DELETE FROM sec_ledger")
    try:
        raised = None
        try:
            with cancel_scope(db, timeout=0.3), db.cursor() as cursor:
                cursor.execute("SELECT sec_charge()")
        except QueryCancelled as exc:
            raised = exc
        with db.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM sec_ledger")
            committed = cursor.fetchone()[0]
        # The read raised (its value may be wrong), but says the server completed it: its write
        # committed, so a caller must not retry it blindly; no server error code is claimed.
        assert raised is not None and committed == 1
        assert raised.completed is True and raised.args[0] is None, raised.args
    finally:
        with db.cursor() as cursor:
            cursor.execute("DROP FUNCTION IF EXISTS sec_charge")
            cursor.execute("DROP TABLE IF EXISTS sec_ledger")
        db.close()
