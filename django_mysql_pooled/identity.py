"""Which server a connection is on: recorded with the connection, compared before a ``KILL QUERY``.

A connection id (``CONNECTION_ID()``, the handshake's thread id) is unique on
one server only. Behind a TCP load balancer or DNS round robin, the
connection that sends ``KILL QUERY <id>`` may land on another server, where
the same id is an unrelated session (vitessio/vitess#9055). So each
connection records its server's identity, and the killer compares its own
before it kills:

* MySQL: ``@@server_uuid``, unique per data directory
  (https://dev.mysql.com/doc/refman/8.0/en/replication-options.html#sysvar_server_uuid);
* MariaDB, which has no ``server_uuid``: ``@@server_id`` plus ``@@hostname``
  and ``@@port`` (https://mariadb.com/kb/en/server-system-variables/).

Both add ``@@hostname`` and ``@@port``, so that two servers left at the same
``server_id`` on one machine differ. The pooled backend reads the identity in
the first statement a new connection sends anyway (a prefix of Django's
connection setup, see :mod:`~django_mysql_pooled.session.deferred_setup`);
the stock backend with :func:`read` on the first cancellable statement.

Django- and driver-free: connections are duck-typed ``MySQLdb`` connections.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = [
    "MARKER",
    "address_of",
    "identity_of",
    "is_pending",
    "mark_pending",
    "probe_sql",
    "read",
    "remember",
    "remember_address",
]

#: The first column of the probe's row, so that a setup batch can tell its row apart.
MARKER: Final = "dmp-server-identity"
_ATTR = "_dmp_server_identity"
_PENDING = "_dmp_server_identity_pending"
_ADDRESS = "_dmp_address"


def probe_sql(server_info: str) -> str:
    """The ``SELECT`` returning a server's identity.

    :param server_info: the handshake's version string (``conn.get_server_info()``,
        no round trip), which tells MariaDB from MySQL.
    """
    if "mariadb" in server_info.lower():
        return f"SELECT '{MARKER}', @@server_id, @@hostname, @@port"
    return f"SELECT '{MARKER}', @@server_uuid, @@hostname, @@port"


def remember(conn: Any, row: Any) -> bool:
    """Record the identity in *row* (the probe's) on *conn*; ``False`` if *row* is not the probe's."""
    if not row or row[0] != MARKER:
        return False
    setattr(conn, _ATTR, "/".join(str(value) for value in row[1:]))
    return True


def identity_of(conn: Any) -> str | None:
    """The identity recorded on *conn* (``"<server_id or uuid>/<hostname>/<port>"``), ``None`` if none."""
    identity: str | None = getattr(conn, _ATTR, None)
    return identity


def mark_pending(conn: Any) -> None:
    """Note that *conn*'s identity arrives with its first statement (no query of its own needed)."""
    setattr(conn, _PENDING, True)


def is_pending(conn: Any) -> bool:
    """Whether *conn*'s identity is on its way (see :func:`mark_pending`)."""
    return bool(getattr(conn, _PENDING, False))


def read(conn: Any) -> str:
    """Read and record *conn*'s identity: one round trip (for connections that had none to share).

    :raises MySQLdb.Error: the query failed.
    """
    cursor = conn.cursor()
    try:
        cursor.execute(probe_sql(conn.get_server_info()))
        remember(conn, cursor.fetchone())
    finally:
        cursor.close()
    return identity_of(conn) or ""


def remember_address(conn: Any, host: str, port: int) -> None:
    """Record the host and port *conn* was opened to, in a pool with several hosts (its
    ``KILL QUERY`` must go to the same server)."""
    setattr(conn, _ADDRESS, (host, port))


def address_of(conn: Any) -> tuple[str, int] | None:
    """The ``(host, port)`` recorded by :func:`remember_address`; ``None``: the alias's one server."""
    address: tuple[str, int] | None = getattr(conn, _ADDRESS, None)
    return address
