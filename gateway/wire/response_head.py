"""An upstream response's head as it is parsed: its fields and framing, checked and capped.

The upstream is not trusted: the head is capped in bytes and fields, framing is accepted only
as h11 accepts it (``Transfer-Encoding`` exactly ``chunked``), interim 1xx heads are skipped,
and fields after the head (trailers) are dropped. A head that breaks a rule is refused: the
error is kept (``refused``) and ``StopParsing`` raised to stop the parser there.
"""

from __future__ import annotations

from typing import NoReturn

import httptools
import httpx

MAX_HEADER_BYTES = 64 * 1024  # the response head: status line, fields, interim heads
MAX_HEADERS = 100  # fields in the final response head
_OWS = b" \t"
_INTERIM = frozenset({100, 102, 103})  # the 1xx heads llhttp knows to have no body
_NOTED = frozenset((b"content-length", b"transfer-encoding", b"content-encoding"))


class HeaderLimitExceeded(httpx.RemoteProtocolError):
    """The upstream's response head broke ``max_header_bytes`` or ``max_headers``."""


class StopParsing(Exception):
    """Raised in a parser callback to stop parsing; any failure was recorded before."""


class ResponseHead:
    """One response's head: ``fields`` as httpx.Headers keeps them (name, lower-cased name,
    value), ``status``, whether the fields say how the body ends (``framed``, ``chunked``)
    and whether the head is complete (``done``). ``on_header`` is the parser's callback
    itself; ``feed`` feeds the parser while the head is incomplete, within its byte cap.
    ``encoded``: the head has a ``Content-Encoding`` field (whatever its value)."""

    __slots__ = (
        "_bytes",
        "chunked",
        "done",
        "encoded",
        "fields",
        "framed",
        "max_bytes",
        "max_fields",
        "refused",
        "status",
    )

    def __init__(self, max_bytes: int = MAX_HEADER_BYTES, max_fields: int = MAX_HEADERS) -> None:
        self.max_bytes = max_bytes
        self.max_fields = max_fields
        self.begin()

    def begin(self) -> None:
        """A new response: nothing of its head yet."""
        self.fields: list[tuple[bytes, bytes, bytes]] = []
        self.status = 0
        self.framed = self.chunked = self.done = self.encoded = False
        self.refused: httpx.TransportError | None = None
        self._bytes = 0  # bytes fed while the final head is not complete

    def feed(self, parser: httptools.HttpResponseParser, data: bytes) -> None:
        """Feed ``data`` to ``parser`` while the head is incomplete: bytes past the cap only
        once the head is complete by then."""
        room = self.max_bytes - self._bytes
        if len(data) <= room:
            self._bytes += len(data)
            parser.feed_data(data)
            return
        if room > 0:
            self._bytes += room
            parser.feed_data(data[:room])
        if not self.done:
            self._refuse_head(f"is larger than {self.max_bytes} bytes (max_header_bytes)")
        parser.feed_data(data[room:])

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.done:
            return  # a trailer: dropped, never merged into the head
        fields = self.fields
        if len(fields) >= self.max_fields:
            self._refuse_head(f"has more than {self.max_fields} header fields (max_headers)")
        if value and value[-1] in _OWS:
            value = value.rstrip(_OWS)  # llhttp strips leading whitespace only
        lowered = name.lower()
        fields.append((name, lowered, value))  # as httpx.Headers keeps them: no copy after
        if lowered not in _NOTED:  # most fields: one lookup, not three comparisons
            return
        if lowered == b"content-length":
            self.framed = True
        elif lowered == b"transfer-encoding":
            self._transfer_encoding(value)
        else:
            self.encoded = True  # content-encoding

    def complete(self, status: int) -> bool:
        """Whether the head just parsed, of ``status``, is the response's (then ``done``);
        False for an interim head (100 Continue, 103 Early Hints), dropped to wait for the
        next; refused for any other status outside 200-599."""
        if 200 <= status <= 599:
            self.status, self.done = status, True
            return True
        if status in _INTERIM:
            self.fields = []
            self.framed = self.chunked = self.encoded = False
            return False
        # llhttp would read a body after an unassigned 1xx head: refused with the rest.
        what = "switched protocols (101)" if status == 101 else f"sent status {status}"
        self._refuse(httpx.RemoteProtocolError(f"Upstream {what}, which is not an answer"))

    def _transfer_encoding(self, value: bytes) -> None:
        """Only ``chunked``, alone and once, as h11 accepts it."""
        if self.chunked or value.lower() != b"chunked":
            self._refuse(
                httpx.RemoteProtocolError(
                    "Upstream used a Transfer-Encoding other than a single 'chunked'"
                )
            )
        self.chunked = self.framed = True

    def _refuse_head(self, why: str) -> NoReturn:
        self._refuse(HeaderLimitExceeded(f"Upstream response head {why}"))

    def _refuse(self, error: httpx.TransportError) -> NoReturn:
        if self.refused is None:
            self.refused = error
        raise StopParsing(str(error))
