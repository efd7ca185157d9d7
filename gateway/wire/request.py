"""A JSON POST to an upstream whose bytes on the wire are made from parts checked once per URL.

``httpx.Request``'s constructor re-encodes and lower-cases every field, and the transport then
reads them back through httpx's properties and checks the whole head byte by byte (as h11
would): together a measurable share of every proxied request. A ``JsonPost`` is still an
``httpx.Request`` (respx, ``httpx.MockTransport`` and the other transports take it as any),
its fields made only when they are asked for; its ``Target`` (the URL's request line, ``host``
and origin) is made and checked once per URL, so that the native transport writes its head
from the target and the few values of this request, each checked as ``outgoing._head`` checks
them. A request whose headers were changed after it was built (a trace's ``traceparent``), or
one with a value the check refuses, goes the general way (``outgoing._head``), refusals and
all.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import httpx

from gateway.wire.pool import Origin

DEFAULT_PORTS = {"http": 80, "https": 443}
# What ``outgoing._head`` checks of a request line; values must hold none of CR, LF, NUL,
# VT or FF.
_REQUEST_LINE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.1")
_NOT_IN_VALUES = re.compile(rb"[\r\n\x00\x0b\x0c]")
_CONTENT_TYPE = b"application/json"


class Target:
    """One upstream URL as the wire client writes to it, made once: ``line`` the request line
    and first field (``accept-encoding``), ``tail`` its ``host`` and ``content-type`` fields;
    ``origin`` the pool's key, None when the URL's parts are not what a head may carry (its
    requests then go the general way)."""

    __slots__ = ("line", "netloc", "origin", "tail", "url")

    def __init__(self, url: httpx.URL) -> None:
        self.url = url
        self.netloc: bytes = url.netloc
        request_line = b"POST %b HTTP/1.1" % url.raw_path
        self.line = request_line + b"\r\naccept-encoding: identity\r\n"
        self.tail = b"host: %b\r\ncontent-type: %b\r\n" % (self.netloc, _CONTENT_TYPE)
        sound = (
            url.scheme in DEFAULT_PORTS
            and _REQUEST_LINE.fullmatch(request_line) is not None
            and _NOT_IN_VALUES.search(self.netloc) is None
        )
        port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
        self.origin: Origin | None = (url.scheme, url.host, port) if sound else None


@functools.lru_cache(maxsize=512)
def target(base_url: str, path: str) -> Target:
    """The ``Target`` of ``base_url + path``, parsed and checked once per URL."""
    return Target(httpx.URL(base_url + path))


class JsonPost(httpx.Request):
    """``httpx.Request("POST", ...)`` with the fields ``accept-encoding: identity``,
    ``x-request-id``, ``accept`` (if any), ``authorization`` (if any), ``host``,
    ``content-type: application/json`` and ``content-length``, in that order, and ``body`` as
    its stream: what ``httpx.Request("POST", url, headers=..., stream=ByteStream(body))``
    makes of them. Its ``headers`` are made when first asked for (the native transport
    writes its head from the parts, and most requests are never asked)."""

    def __init__(
        self,
        to: Target,
        request_id: bytes,
        accept: bytes | None,
        authorization: bytes | None,
        body: bytes,
        extensions: dict[str, Any],
    ) -> None:
        self.method = "POST"
        self.url = to.url
        self.extensions = extensions
        self.stream = self._stream = httpx.ByteStream(body)
        self._body = body
        self.target = to
        self._values = (request_id, accept, authorization, b"%d" % len(body))
        self._headers: httpx.Headers | None = None

    @property
    def headers(self) -> httpx.Headers:
        headers = self._headers
        if headers is None:
            request_id, accept, authorization, length = self._values
            fields = [(b"accept-encoding", b"identity"), (b"x-request-id", request_id)]
            if accept is not None:
                fields.append((b"accept", accept))
            if authorization is not None:
                fields.append((b"authorization", authorization))
            fields += [(b"host", self.target.netloc), (b"content-type", _CONTENT_TYPE),
                       (b"content-length", length)]  # fmt: skip
            headers = self._headers = _Fields(fields)
        return headers

    @headers.setter
    def headers(self, headers: httpx.Headers) -> None:
        self._headers = headers

    def prepared(self) -> tuple[Origin, bytes, bytes] | None:
        """Its origin, its head as ``outgoing._head`` writes it and its body; None when the
        transport must make them itself (its URL, headers or stream changed since it was
        built, or a value that check refuses)."""
        headers, to = self._headers, self.target
        if (
            (headers is not None and (type(headers) is not _Fields or headers.changed))
            or self.url is not to.url
            or self.stream is not self._stream
            or to.origin is None
        ):
            return None
        request_id, accept, authorization, length = self._values
        parts = [to.line, b"x-request-id: ", request_id, b"\r\n"]
        values = request_id
        if accept is not None:
            parts += (b"accept: ", accept, b"\r\n")
            values += accept
        if authorization is not None:
            parts += (b"authorization: ", authorization, b"\r\n")
            values += authorization
        if _NOT_IN_VALUES.search(values) is not None:
            return None  # refused the general way, with its message
        parts += (to.tail, b"content-length: ", length, b"\r\n\r\n")
        return to.origin, b"".join(parts), self._body


class _Fields(httpx.Headers):
    """httpx's headers of a ``JsonPost``, taken as they are (names lower-case, values bytes),
    noting any change made after (``changed``)."""

    def __init__(self, fields: list[tuple[bytes, bytes]]) -> None:
        self._list = [(name, name, value) for name, value in fields]
        self._encoding = None
        self.changed = False

    def __setitem__(self, key: str, value: str) -> None:
        self.changed = True
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.changed = True
        super().__delitem__(key)
