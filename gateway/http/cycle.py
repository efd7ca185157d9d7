"""The request cycle of the gateway's server protocol, writing an answer's head with its body.

uvicorn's ``RequestResponseCycle.send`` takes one ASGI message at a time: a JSON answer's head
is one ``transport.write`` and its body another (two send() calls), each header runs two
regexes, and a stream's end is one more write after its last chunk. ``GatewayCycle`` adds
writers that put the head and the first body part in one write (the whole answer, for a JSON
one), and a stream's chunks with their framing (the last with the body's end) in one write each.

They keep uvicorn's bookkeeping exactly: flow control (a paused transport is drained first), a
client gone (the answer dropped), ``response_started``/``response_complete``, keep-alive and
``connection: close``, the server's default headers, HEAD and 204/304, the content length and
its errors, the access log, and ``on_response`` (the next pipelined request starts). The header
checks stay: a name or value uvicorn would refuse raises its ``RuntimeError`` at the same point
(the head started, nothing written, so the connection is closed without an answer); names are
scanned the first time they are seen, the values in one scan unless all are printable.
A whole answer whose names are all lower-case ones checked before (``write_plain``, the usual
JSON answer) skips the field list: its head is joined straight from the reply's headers.
Whatever these writers do not take (a status or a default header only uvicorn's ``send``
handles) goes through ``send``, which this class leaves as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from gateway.errors import PayloadTooLarge
from gateway.http import head_fields
from gateway.http.head_fields import (
    FRAMING,
    MARK,
    PLAIN_NAMES,
    Fields,
    encoded,
    joined_defaults,
    plain,
    refused,
)

_LENGTH_ONLY = {"content-length"}
_JOIN_BELOW = 16 * 1024  # a larger body goes out beside its head (writelines), not copied
_AFTER_COMPLETE = (
    "Unexpected ASGI message 'http.response.body' sent, after response already completed."
)
# The statuses whose answer has a content-length (Starlette's rule) and a status line
_LENGTHED = frozenset(
    status for status in STATUS_LINE if status >= 200 and status not in (204, 304)
)


class GatewayCycle(RequestResponseCycle):
    """uvicorn's request cycle with writers that join what ``send`` writes apart, and a body
    cap of its own (``cap_body``) that ``receive`` and ``whole_body`` keep."""

    body_cap: int | None = None  # set once (``cap_body``), then per instance
    received = 0
    # told once when the client leaves mid-answer (``http.client_gone``: its ``watch`` sets
    # it, its ``client_left`` calls it); the class's None for a cycle nobody watches
    on_disconnect: Callable[[], None] | None = None

    def cap_body(self, max_bytes: int) -> bool:
        """Stop a body past ``max_bytes`` with a 413, as ``body_limit.limited`` does around
        ``receive``; False if a cap is set already (a second one wraps ``receive``)."""
        if self.body_cap is not None:
            return False
        self.body_cap = max_bytes
        return True

    async def receive(self) -> ASGIReceiveEvent:
        """uvicorn's, counting the body against the cap."""
        if self.waiting_for_100_continue and not self.transport.is_closing():
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.waiting_for_100_continue = False
        if not self.disconnected and not self.response_complete:
            self.flow.resume_reading()
            await self.message_event.wait()
            self.message_event.clear()
        if self.disconnected or self.response_complete:
            return {"type": "http.disconnect"}
        body = bytes(self.body)
        self.body = bytearray()
        if self.body_cap is not None:
            self._count(len(body))
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    def whole_body(self) -> bytes | None:
        """What ``receive`` gives now when that is the whole body with nothing to wait for or
        write first (a 100 Continue): its bytes. None, nothing done, otherwise."""
        if (
            self.more_body
            or self.waiting_for_100_continue
            or self.disconnected
            or self.response_complete
            or not self.message_event.is_set()
        ):
            return None
        if self.flow.read_paused:  # (``resume_reading``'s own test: no call when not paused)
            self.flow.resume_reading()
        self.message_event.clear()
        body = bytes(self.body)
        self.body = bytearray()
        if self.body_cap is not None:
            self._count(len(body))
        return body

    def _count(self, size: int) -> None:
        self.received += size
        if self.received > self.body_cap:  # type: ignore[operator]
            raise PayloadTooLarge(f"Request body exceeds the {self.body_cap} byte limit.")

    def takes(self, status: int) -> bool:
        """Whether ``write_start`` can start this answer (else: ``send``'s messages)."""
        return (
            not self.response_started
            and status in STATUS_LINE
            and joined_defaults(self.default_headers) is not None
        )

    async def drain(self) -> None:
        """Wait while the transport's buffer is full, as ``send`` does before each write."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()

    async def send_whole(self, status: int, fields: Fields, body: bytes) -> None:
        """A whole answer (``takes(status)`` true): ``send``'s two messages in one write."""
        head = encoded(fields)
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        self.write_start(status, fields, body, more_body=False, head=head)

    async def send_plain(
        self, status: int, fields: Mapping[str, str], body: bytes, content_type: str | None
    ) -> bool:
        """``write_plain`` once the transport's buffer has room (drained first, as ``send``
        does before each write)."""
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()
        return self.write_plain(status, fields, body, content_type)

    def write_plain(
        self, status: int, fields: Mapping[str, str], body: bytes, content_type: str | None
    ) -> bool:
        """A whole answer whose names are all ``plain`` (the usual JSON answer), as
        ``send_whole`` sends it with Starlette's content-length and ``content_type`` (if not
        None) after ``fields``: the head encoded in one join (no field list, zip or framing
        pass), its values checked in one translate. False, nothing done, for any other answer
        and while the transport's buffer is full (``send_plain`` drains it first)."""
        if (
            status not in _LENGTHED
            or not fields
            or self.response_started
            or self.scope["method"] == "HEAD"
            or not (PLAIN_NAMES.issuperset(fields) or plain(fields))
            or (self.flow.write_paused and not self.disconnected)
        ):
            return False
        known = head_fields.defaults  # (no call)
        defaults = known[1] if self.default_headers is known[0] else None
        if defaults is None and (defaults := joined_defaults(self.default_headers)) is None:
            return False
        text = "\r\n".join(map(": ".join, fields.items()))
        text = f"{text}\r\ncontent-length: {len(body)}\r\n"
        if content_type is not None:
            text = f"{text}content-type: {content_type}\r\n"
        head = text.encode("latin-1")
        values = "".join(fields.values()).encode("latin-1")
        if content_type is not None:
            values += content_type.encode("latin-1")
        refused = values.translate(MARK) != values
        if self.disconnected:
            return True
        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self._log_start(status)
        if refused:
            raise RuntimeError("Invalid HTTP header value.")
        self.chunked_encoding = False
        self.expected_content_length = 0
        ends = b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n"
        if len(body) < _JOIN_BELOW:
            self.transport.write(b"".join((STATUS_LINE[status], defaults, head, ends, body)))
        else:
            self.transport.writelines([b"".join((STATUS_LINE[status], defaults, head, ends)), body])
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True

    def write_start(
        self,
        status: int,
        fields: Fields,
        body: bytes,
        *,
        more_body: bool,
        head: bytes | None = None,
    ) -> None:
        """``http.response.start`` and the first ``http.response.body`` in one write, drained
        before (``takes(status)`` true); ``head``: ``fields`` as written, if already built."""
        if head is None:
            head = encoded(fields)
        if self.disconnected:
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        if self.access_log:
            self._log_start(status)
        close_given = False
        if fields:
            names, values = zip(*fields, strict=True)
            problem = refused(names, values)
            if problem is not None:
                raise RuntimeError(problem)
            framing = FRAMING.intersection(names)
            if framing == _LENGTH_ONLY:  # a whole answer's usual framing
                self._framing("content-length", values[names.index("content-length")])
            elif framing:
                for name, value in fields:
                    if name in FRAMING:
                        close_given |= self._framing(name, value)
        ends = b"\r\n"
        if not self.keep_alive and not close_given:
            ends = b"connection: close\r\n\r\n"
        chunked = status not in (204, 304) and self.scope["method"] != "HEAD"
        if chunked and self.chunked_encoding is None:  # no content-length, no transfer-encoding
            self.chunked_encoding = True
            ends = ends[:-2] + b"transfer-encoding: chunked\r\n\r\n"
        defaults = joined_defaults(self.default_headers)
        assert defaults is not None  # takes(status)
        self._write_body(b"".join((STATUS_LINE[status], defaults, head, ends)), body, more_body)

    def write_body(self, body: bytes, more_body: bool) -> None:
        """An ``http.response.body`` after the start, as ``send`` writes it (drained before)."""
        if self.disconnected:
            return
        if self.response_complete:
            raise RuntimeError(_AFTER_COMPLETE)
        if more_body and self.chunked_encoding and self.scope["method"] != "HEAD":
            if body:  # a stream's chunk: the common case, first
                self.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
            return
        self._write_body(b"", body, more_body)

    def chunk_pusher(self) -> Callable[[bytes], bool]:
        """What offers a stream's next non-empty chunk once the head is out: False, nothing
        done, while the transport's buffer is full (``send`` would drain first); else the chunk
        written as ``write_body(chunk, True)`` writes it, and True. For a chunked answer one
        call does it, with only the checks that can change between chunks."""
        if self.chunked_encoding and self.scope["method"] != "HEAD":
            return self._push_chunk
        flow, write = self.flow, partial(self.write_body, more_body=True)

        def push(body: bytes) -> bool:
            if flow.write_paused:
                return False
            write(body)
            return True

        return push

    def _push_chunk(self, body: bytes) -> bool:
        if self.flow.write_paused:
            return False
        if self.disconnected:
            return True
        if self.response_complete:
            raise RuntimeError(_AFTER_COMPLETE)
        self.transport.write(b"%x\r\n%b\r\n" % (len(body), body))
        return True

    def _log_start(self, status: int) -> None:
        """uvicorn's access log line for an answer starting."""
        self.access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            get_client_addr(self.scope),
            self.scope["method"],
            get_path_with_query_string(self.scope),
            self.scope["http_version"],
            status,
        )

    def _framing(self, name: str, value: str) -> bool:
        """``send``'s reading of a framing field; True for ``connection: close``."""
        if name == "content-length":
            if self.chunked_encoding is None:
                self.expected_content_length = int(value)
                self.chunked_encoding = False
        elif name == "transfer-encoding":
            if value.lower() == "chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
        elif b"close" in [token.lower().strip() for token in value.encode("latin-1").split(b",")]:
            self.keep_alive = False
            return True
        return False

    def _write_body(self, head: bytes, body: bytes, more_body: bool) -> None:
        """``send``'s body branch, writing ``head`` (what precedes the body) in the same write."""
        if self.scope["method"] == "HEAD":
            self.expected_content_length = 0
            if head:
                self.transport.write(head)
        elif self.chunked_encoding:
            framed = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
            self.transport.write(b"".join((head, framed, b"" if more_body else b"0\r\n\r\n")))
        else:
            size = len(body)
            if size > self.expected_content_length:
                if head:
                    self.transport.write(head)
                raise RuntimeError("Response content longer than Content-Length")
            self.expected_content_length -= size
            if size < _JOIN_BELOW or not head:
                self.transport.write(head + body if head else body)
            else:
                self.transport.writelines([head, body])
        if not more_body:
            if self.expected_content_length != 0:
                raise RuntimeError("Response content shorter than Content-Length")
            self.response_complete = True
            self.message_event.set()
            if not self.keep_alive:
                self.transport.close()
            self.on_response()
