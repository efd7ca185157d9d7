"""A proxied request whose headers are looked up in a dict built once, not scanned per lookup.

The pipeline looks up some seven names per request (the key, the request id, tags, cache
control, content length and type...), most of them absent; Starlette's ``Headers`` scans the
whole list for each and raises a ``KeyError`` inside ``get`` for every miss. The first value
of a repeated name wins, as with Starlette's lookups.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request, empty_send
from starlette.types import Receive, Scope

from gateway.http.cycle import GatewayCycle


class IndexedHeaders(Headers):
    def __init__(self, scope: Scope) -> None:
        # ``Headers(scope=scope)``'s own work, without its checks of the other arguments (and
        # the copy of a list already: the scope holds the one it copies into in either case)
        headers = scope["headers"]
        if type(headers) is not list:
            headers = scope["headers"] = list(headers)
        self._list = headers
        # the first of a repeated name wins: the last one written into the dict. Kept as the
        # bytes that came (built in C); a value is decoded when looked up, most names never are
        self._index: dict[bytes, bytes] = dict(reversed(self._list))

    def __getitem__(self, key: str) -> str:
        value = self._index.get(_NAMES[key])  # type: ignore[arg-type]
        if value is None:
            raise KeyError(key)
        return value.decode("latin-1")

    def get(self, key: str, default: Any = None) -> Any:
        value = self._index.get(_NAMES[key])  # type: ignore[arg-type]
        return default if value is None else value.decode("latin-1")

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and _NAMES[key] in self._index


class _Names(dict[str, bytes | None]):
    """The names looked up (a small vocabulary: the gateway's own), lower-cased and encoded as
    the index holds them (None: no name can match); one subscript per lookup."""

    def __missing__(self, key: str) -> bytes | None:
        try:
            name = key.lower().encode("latin-1")
        except UnicodeEncodeError:  # no header name decodes to it
            return None
        if len(self) < _NAMES_MAX:
            self[key] = name
        return name


_NAMES = _Names()
_NAMES_MAX = 4096


class ProxiedRequest(Request):
    """Its headers indexed up front: every proxied request reads them (and Starlette's lazy
    ``hasattr`` check formats an AttributeError on first use)."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        # ``Request.__init__``'s own work, without its two calls up and their checks of a
        # scope the fast lane has checked
        self.scope = scope
        self._receive = receive
        self._send = empty_send
        self._stream_consumed = False
        self._is_disconnected = False
        self._form = None
        # read as a plain attribute, not through a property call on each of its uses (set, not
        # written through ``__dict__``: asking for that turns the attributes into a dict)
        self.headers = IndexedHeaders(scope)

    @cached_property
    def headers(self) -> Headers:
        return IndexedHeaders(self.scope)  # (set by __init__ already)

    async def body(self) -> bytes:
        """Starlette's ``Request.body`` read straight from ``receive``, without its
        ``stream()`` generator (which the event loop tracks and finalises) and its
        ``hasattr`` check (an AttributeError formatted on every request)."""
        body: bytes | None = getattr(self, "_body", None)
        if body is not None:
            return body
        if self._stream_consumed:
            raise RuntimeError("Stream consumed")
        cycle = getattr(self._receive, "__self__", None)
        if type(cycle) is GatewayCycle:  # served by the gateway's protocol
            body = cycle.whole_body()
            if body is not None:  # all in: what one ``receive`` would give
                self._stream_consumed = True
                self._body = body
                return body
        chunks: list[bytes] = []
        while True:
            message = await self._receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                if chunk:
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            elif message["type"] == "http.disconnect":
                self._is_disconnected = True
                raise ClientDisconnect()
        self._stream_consumed = True
        body = self._body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return body
