"""What the backend does with a connection before it goes back to the pool.

An open transaction is rolled back first, also when the pool resets the
session next: ``COM_RESET_CONNECTION`` leaves an XA transaction
(``XA START`` ... ``XA PREPARE``) attached to the session, where the next
checkout would meet it; ``ROLLBACK`` fails for one (error 1399) and the
connection is closed instead, as the stock backend's ``close()`` would (a
prepared one stays recoverable, ``XA RECOVER``).

A transaction left open is a warning, except with ``AUTOCOMMIT: False``: there
every request's work is one transaction, and one still open at checkin (rolled
back, as the stock backend's ``close()`` rolls it back) is normal: ``info``.
"""

from __future__ import annotations

import logging
from typing import Any

import MySQLdb

from django_mysql_pooled.pool import stats
from django_mysql_pooled.session.factory import DjangoPool
from django_mysql_pooled.session.native import SERVER_STATUS_IN_TRANS, native_client

__all__ = ["in_transaction", "roll_back_at_checkin"]

logger = logging.getLogger(__name__)

_native = native_client()  # probed once, at import (a checkin must not pay for the call)


def roll_back_at_checkin(pool: DjangoPool, conn: Any, *, errors_occurred: bool) -> bool:
    """Roll back an open transaction on *conn* now; return whether *conn* is broken.

    :param errors_occurred: Django's flag: a database error happened during
        the checkout (without a reset at checkin, a ping then decides).
    """
    if not pool.resets_on_checkin and errors_occurred and not _is_usable(conn):
        return True  # (with a reset at checkin, the reset is the check)
    open_transaction = in_transaction(conn)
    if open_transaction is False:
        return False
    try:
        conn.rollback()  # so that no row lock is held while the connection is idle
    except MySQLdb.Error:
        return True
    if open_transaction:
        pool.count(stats.RETURNS_ROLLED_BACK)
        if pool.restorer.autocommit:
            logger.warning("pool %r: rolled back a transaction left open at checkin", pool.name)
        else:  # AUTOCOMMIT: False: every request leaves one open, as Django's close() would roll it back
            logger.info("pool %r: rolled back the open transaction at checkin (AUTOCOMMIT is False)", pool.name)
    return False


def in_transaction(conn: Any) -> bool | None:
    """Whether *conn* has an open transaction (``None``: the client library cannot tell).

    Read from the status flags of the server's last reply
    (``SERVER_STATUS_IN_TRANS``) through MariaDB Connector/C, without a round
    trip; with MySQL's libmysqlclient it is unknown and the caller rolls back.
    """
    status = _native.server_status(conn)
    if status is None:
        return None
    return bool(status & SERVER_STATUS_IN_TRANS)


def _is_usable(conn: Any) -> bool:
    try:
        conn.ping()
    except MySQLdb.Error:
        return False
    return True
