"""An answer's header fields checked as uvicorn checks them, and encoded as it writes them.

uvicorn runs two regexes per header of every answer; here a name is scanned the first time it
is seen (a small vocabulary: the gateway's own and those it forwards), the values in one pass
(``MARK``), the server's default headers joined once per list uvicorn makes, and a whole
answer's names found ``plain`` once each. ``cycle.GatewayCycle`` writes with these.
"""

from __future__ import annotations

import re
from collections.abc import Collection

Fields = list[tuple[str, str]]  # (lower-case name, value), in order

# uvicorn's HEADER_RE and HEADER_VALUE_RE, for str: a header field it refuses
_BAD_NAME = re.compile('[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
FRAMING = frozenset(("content-length", "transfer-encoding", "connection"))
_FRAMING_BYTES = frozenset(name.encode() for name in FRAMING)

# The server's default headers (``date``, ``server``, the configured ones) joined, for the list
# they came in: uvicorn replaces the list each second, with a new date.
defaults: tuple[list[tuple[bytes, bytes]], bytes | None] = ([], b"")


def joined_defaults(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The default headers as uvicorn writes them; None when one needs ``send`` (a framing
    field, or one it refuses)."""
    global defaults
    seen, joined = defaults
    if headers is seen:
        return joined
    joined = b""
    for name, value in headers:
        name = name.lower()
        if name in _FRAMING_BYTES or _bad(name.decode("latin-1"), value.decode("latin-1")):
            joined = None
            break
        joined += b"%s: %s\r\n" % (name, value)
    defaults = (headers, joined)
    return joined


def encoded(fields: Fields) -> bytes:
    """The fields as they are written, each line ending in CRLF."""
    if not fields:
        return b""
    return ("\r\n".join(map(": ".join, fields)) + "\r\n").encode("latin-1")


# The bytes uvicorn refuses in a value (``_BAD_VALUE``), each translated to another byte: a
# value holding one is changed by ``MARK`` (one pass in C, where ``isprintable`` looks up
# each character's Unicode class).
MARK = bytes(
    (byte + 1) % 256 if (byte < 0x20 and byte != 0x09) or byte == 0x7F else byte
    for byte in range(256)
)


def _bad(names: str, values: str) -> str | None:
    if _BAD_NAME.search(names):
        return "Invalid HTTP header name."
    if _BAD_VALUE.search(values):
        return "Invalid HTTP header value."
    return None


# Names that passed the check (a small vocabulary: the gateway's own and those it forwards)
_GOOD_NAMES: set[str] = set()
_GOOD_NAMES_MAX = 4096


def refused(names: tuple[str, ...], values: tuple[str, ...]) -> str | None:
    """What uvicorn says of these fields if it refuses one (its check: one scan of the names
    not seen before, one of the values' bytes: the fields were encoded as latin-1 already)."""
    if not _GOOD_NAMES.issuperset(names):
        if _BAD_NAME.search("".join(names)):
            return "Invalid HTTP header name."
        if len(_GOOD_NAMES) < _GOOD_NAMES_MAX:
            _GOOD_NAMES.update(names)
    joined = "".join(values).encode("latin-1")
    if joined.translate(MARK) != joined:
        return "Invalid HTTP header value."
    return None


# Names a whole answer's head takes as they come (``plain``): lower-case, accepted by uvicorn's
# check, and none of the framing fields, which ``write_start`` reads
PLAIN_NAMES: set[str] = set()


def plain(names: Collection[str]) -> bool:
    """Whether all ``names`` are plain (checked once per name: a small vocabulary)."""
    if PLAIN_NAMES.issuperset(names):
        return True
    new = [name for name in names if name not in PLAIN_NAMES]
    if any(name != name.lower() or name in FRAMING for name in new):
        return False
    if _BAD_NAME.search("".join(new)):
        return False
    if len(PLAIN_NAMES) < _GOOD_NAMES_MAX:
        PLAIN_NAMES.update(new)
    return True
