"""One request as it goes on the wire: its head checked as h11 would check it, and its body.

A ``JsonPost`` brings both made already (``gateway.wire.request``); any other request is
written the general way here, refused with ``httpx.LocalProtocolError`` before anything is
sent where h11 would refuse it.
"""

from __future__ import annotations

import re
from operator import itemgetter

import httpx

from gateway.wire.connection import Connection

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# What h11 sends: a token method and field names, a target of visible ASCII, and values without
# NUL, CR, LF, VT or FF. (h11 also refuses leading or trailing SP/HTAB in a value; servers strip
# those anyway, so they pass.) Names the gateway sends are known good and skip the pattern.
_TOKEN_ONLY = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
_REQUEST_LINE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.1")
_NOT_IN_VALUES = b"\x00\x0b\x0c"  # besides CR and LF, counted on their own
_KNOWN_NAMES = frozenset(  # never transfer-encoding: a chunked request replaces the caller's
    {
        b"host",
        b"accept",
        b"accept-encoding",
        b"authorization",
        b"content-type",
        b"content-length",
        b"user-agent",
        b"x-request-id",
        b"connection",
    }
)
_name = itemgetter(0)


class Outgoing:
    """A request other than a ``JsonPost`` as it goes on the wire: its head (validated) and
    its body, in memory or streamed."""

    __slots__ = ("body", "chunked", "head", "no_body", "replayable", "stream")

    def __init__(self, request: httpx.Request):
        stream = request.stream
        self.stream = stream
        self.body: bytes | None = None
        if isinstance(stream, httpx.ByteStream):
            self.body = b"".join(stream)  # one piece, already in memory
        self.chunked = self.body is None and "content-length" not in request.headers
        self.head = _head(request, self.chunked)
        method = request.method
        self.no_body = method == "HEAD"
        self.replayable = self.body is not None and method in IDEMPOTENT

    async def exchange(self, connection: Connection, timeout: float | None) -> None:
        if self.body is not None:
            await connection.exchange(self.head, self.body, timeout, self.no_body)
        else:
            await connection.exchange_streaming(
                self.head, self.stream, self.chunked, timeout, self.no_body
            )


def _head(request: httpx.Request, chunked: bool) -> bytes:
    """The request line and fields, refused with ``httpx.LocalProtocolError`` where h11 would
    refuse them (a CR/LF in a value would otherwise let a caller write fields of its own)."""
    fields = request.headers.raw
    if not _KNOWN_NAMES.issuperset(map(_name, fields)):
        fields = _checked_names(fields, chunked)
    lines = [b"%b %b HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    lines += map(b": ".join, fields)
    if chunked:
        lines.append(b"transfer-encoding: chunked")
    lines.append(b"\r\n")
    head = b"\r\n".join(lines)
    breaks = len(lines)  # each line break is one of ours: none inside a value
    if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
        raise httpx.LocalProtocolError(_bad_value(lines))
    if len(head.translate(None, _NOT_IN_VALUES)) != len(head):
        raise httpx.LocalProtocolError(_bad_value(lines))
    if _REQUEST_LINE.fullmatch(lines[0]) is None:
        raise httpx.LocalProtocolError("Refused to send a request line with an invalid target")
    return head


def _checked_names(fields: list[tuple[bytes, bytes]], chunked: bool) -> list[tuple[bytes, bytes]]:
    """``fields`` with names the gateway does not send itself checked to be tokens, and a
    caller's transfer-encoding dropped from a chunked request (which sends its own)."""
    kept: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if name not in _KNOWN_NAMES:
            if chunked and name.lower() == b"transfer-encoding":
                continue
            if _TOKEN_ONLY.fullmatch(name) is None:
                raise httpx.LocalProtocolError(_bad_field(len(kept) + 1, name))
        kept.append((name, value))
    return kept


def _bad_field(number: int, name: bytes) -> str:
    return f"Refused to send header field #{number}: its name {name!r} is not a token"


def _bad_value(lines: list[bytes]) -> str:
    """Which field's value is bad, never repeating the value (it may be a secret)."""
    for number, line in enumerate(lines[1:-1], 1):
        name, _, value = line.partition(b": ")
        if any(byte in value for byte in b"\r\n\x00\x0b\x0c"):
            return f"Refused to send header field #{number} {name.decode('latin-1')!r}: bad value"
    return "Refused to send a request line with invalid bytes"
