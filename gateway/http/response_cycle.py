"""uvicorn's request-response cycle with a cheaper ``send`` for the common answer.

uvicorn checks each response header field against two patterns, one at a time, and builds the
head piece by piece; with the gateway's fifteen-odd fields per answer that was a measurable
share of a request's cost. ``LeanCycle.send`` checks all names at once and all values at once
(joined by a byte each pattern allows, so a forbidden byte is found exactly when uvicorn would
find one), builds the head with joins, and writes a known-length body without uvicorn's
per-message branching. Anything else (a paused or gone client, access logging, HEAD, a message
out of order) goes to uvicorn's own ``send``, so what reaches the wire and which errors are
raised stay uvicorn's.
"""

from __future__ import annotations

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

_FRAMING = frozenset({b"content-length", b"transfer-encoding", b"connection"})
# The bytes uvicorn's patterns refuse, found with ``bytes.translate`` (a table lookup per byte
# in C) rather than the patterns' character classes.
_BAD_IN_NAMES = bytes(b for b in range(256) if HEADER_RE.match(bytes([b])))
_BAD_IN_VALUES = bytes(b for b in range(256) if HEADER_VALUE_RE.match(bytes([b])))


class LeanCycle(RequestResponseCycle):
    async def send(self, message: ASGISendEvent) -> None:
        if self.disconnected or self.flow.write_paused or self.access_log:
            await super().send(message)
        elif not self.response_started and message["type"] == "http.response.start":
            self._start(message["status"], message.get("headers", ()))
        elif (
            self.chunked_encoding is not None
            and not self.response_complete
            and message["type"] == "http.response.body"
            and self.scope["method"] != "HEAD"
        ):
            self._body(message.get("body", b""), message.get("more_body", False))
        else:
            await super().send(message)

    def _start(self, status: int, headers: object) -> None:
        self.response_started = True
        self.waiting_for_100_continue = False
        fields = self.default_headers + list(headers)  # type: ignore[call-overload]
        names = [name for name, _ in fields]
        values = [value for _, value in fields]
        joined = b"a".join(names)
        if len(joined.translate(None, _BAD_IN_NAMES)) != len(joined):
            raise RuntimeError("Invalid HTTP header name.")
        joined = b"\t".join(values)
        if len(joined.translate(None, _BAD_IN_VALUES)) != len(joined):
            raise RuntimeError("Invalid HTTP header value.")
        names = [name.lower() for name in names]
        has_connection_close = False
        for name, value in [
            pair for pair in zip(names, values, strict=True) if pair[0] in _FRAMING
        ]:
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                tokens = [token.lower().strip() for token in value.split(b",")]
                if b"close" in tokens:
                    self.keep_alive = False
                    has_connection_close = True
        content = [STATUS_LINE[status]]
        if names:
            content += [b"\r\n".join(map(b": ".join, zip(names, values, strict=True))), b"\r\n"]
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status not in (204, 304)
        ):
            self.chunked_encoding = True
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))

    def _body(self, body: bytes, more_body: bool) -> None:
        if self.chunked_encoding:
            content = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
            if not more_body:
                content.append(b"0\r\n\r\n")
            self.transport.write(b"".join(content))
        else:
            if len(body) > self.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= len(body)
            self.transport.write(body)
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
