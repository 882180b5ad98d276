"""Just enough of the MySQL client/server protocol to count what a client sends.

Every packet starts with a 3-byte little-endian length and a 1-byte sequence
number. A command starts a new sequence (number 0) and its first payload byte
is the command; packets with a non-zero sequence number from the client are the
handshake response and authentication exchanges. Each command except
``COM_QUIT`` waits for the server's reply: one round trip.
"""

from __future__ import annotations

from collections.abc import Callable

COMMANDS = {
    0x01: "COM_QUIT",
    0x02: "COM_INIT_DB",
    0x03: "COM_QUERY",
    0x0E: "COM_PING",
    0x11: "COM_CHANGE_USER",
    0x16: "COM_STMT_PREPARE",
    0x17: "COM_STMT_EXECUTE",
    0x19: "COM_STMT_CLOSE",
    0x1B: "COM_SET_OPTION",
    0x1F: "COM_RESET_CONNECTION",
}

#: Categories in report order; ``quit`` costs no round trip.
CATEGORIES = ("connect", "reset", "health", "setup", "query", "txn_end", "other", "quit")

#: The table the workloads query (anything touching it is "the query itself").
QUERY_MARKER = "`ITEM`"

_SETUP_PREFIXES = (
    "SET ",
    "USE ",
    "SELECT @@",
    "SHOW ",
    "SELECT VERSION",
    "SELECT CURRENT_ROLE",
    "SELECT COUNT(*) FROM INFORMATION_SCHEMA",
)


def classify(seq: int, payload: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Return the round trip's category and its statements as ``(category, label)`` pairs.

    A ``COM_QUERY`` may carry several statements (``SET ...; SELECT ...``): it
    costs one round trip, counted under the query when one of them is a query.
    """
    if seq != 0:
        return "connect", [("connect", "handshake/auth packet")]
    if not payload:
        return "other", [("other", "empty packet")]
    name = COMMANDS.get(payload[0], f"COM_0x{payload[0]:02x}")
    if name == "COM_QUERY":
        statements = [_classify_query(s) for s in _split(payload[1:].decode("utf-8", "replace"))]
        categories = [category for category, _label in statements]
        return ("query" if "query" in categories else categories[0] if categories else "other"), statements
    category = {
        "COM_QUIT": "quit",
        "COM_RESET_CONNECTION": "reset",
        "COM_CHANGE_USER": "reset",
        "COM_PING": "health",
        "COM_INIT_DB": "setup",
    }.get(name, "other")
    return category, [(category, name)]


def _split(sql: str) -> list[str]:
    """Split on ``;`` outside quotes (enough for the statements Django and the backends send)."""
    parts, current, quote = [], [], ""
    for char in sql:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"`":
            quote = char
        elif char == ";":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _classify_query(sql: str) -> tuple[str, str]:
    upper = sql.upper()
    label = " ".join(sql.split())
    if QUERY_MARKER in upper:
        return "query", _shorten(label.split(" WHERE ")[0])
    if upper.startswith(_SETUP_PREFIXES):
        return "setup", _shorten(label)
    if upper in ("ROLLBACK", "COMMIT"):
        return "txn_end", upper
    if upper.startswith("SELECT 1"):
        return "health", label
    return "other", _shorten(label)


def _shorten(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PacketScanner:
    """Split one direction of a connection into packets and report each to *on_packet*.

    Only the first 256 bytes of a payload are kept; the stream itself is
    forwarded untouched by the caller.
    """

    def __init__(self, on_packet: Callable[[int, bytes], None]) -> None:
        self._on_packet = on_packet
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        buf = self._buffer
        buf += data
        while len(buf) >= 4:
            length = buf[0] | buf[1] << 8 | buf[2] << 16
            if len(buf) < 4 + length:
                return
            seq = buf[3]
            payload = bytes(buf[4 : 4 + min(length, 256)])
            del buf[: 4 + length]
            self._on_packet(seq, payload)
