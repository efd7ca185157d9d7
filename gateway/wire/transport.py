"""httpx's transport interface over the gateway's own HTTP/1.1 connections.

Callers keep httpx's API (``httpx.Request`` in, ``httpx.Response`` out, httpx's exceptions), so
respx and ``httpx.MockTransport`` still stand in for it in tests.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import httpx

from gateway.wire.connection import ClosedBeforeSend, Connection, Sink
from gateway.wire.outgoing import Outgoing
from gateway.wire.pool import ConnectionPool, Origin
from gateway.wire.request import DEFAULT_PORTS, JsonPost
from gateway.wire.response_head import MAX_HEADER_BYTES, MAX_HEADERS

_NO_TIMEOUTS: dict[str, float | None] = {}  # never written to


class NativeTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 to upstreams over a keep-alive pool.

    ``max_header_bytes`` caps a response head (status line and fields, interim 1xx heads
    included; also trailers and chunk framing that arrive without body bytes) and
    ``max_headers`` its number of fields; past either the answer fails with
    ``HeaderLimitExceeded`` (an ``httpx.RemoteProtocolError``) and the connection is dropped.
    Bodies are handed out as received, never decoded: read ``response.stream`` (httpx's
    ``aiter_bytes`` would decompress). Header values are decoded as latin-1, so they go back
    out byte for byte.

    A request that failed on a reused connection the server had closed is sent again on a new
    one only where that cannot repeat work: when the close was seen before any byte went out,
    or for an idempotent method (GET, HEAD, OPTIONS, TRACE) with its body in memory that got
    no byte of answer. A response that needed such a second sending carries
    ``response.extensions["gateway_replayed"] = True``.
    """

    def __init__(
        self,
        max_connections: int = 10_000,
        keepalive_expiry_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        # Below uvicorn's 5 s keep-alive (vLLM, many self-hosted upstreams), so an idle
        # connection is dropped here before the server drops it under a request.
        self._pool = ConnectionPool(
            max_connections,
            keepalive_expiry_s,
            ssl_context or httpx.create_ssl_context(),
            max_header_bytes,
            max_headers,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        prepared = request.prepared() if type(request) is JsonPost else None
        outgoing: Outgoing | None = None
        if prepared is not None:  # its head made from parts checked once per URL
            origin, head, body = prepared
        else:
            url = request.url
            if url.scheme not in DEFAULT_PORTS:
                raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {url.scheme!r}")
            origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
            outgoing = Outgoing(request)  # refused here, before any connection is taken
        timeouts: dict[str, float | None] = request.extensions.get("timeout", _NO_TIMEOUTS)
        read_timeout = timeouts.get("read")
        replayed = False
        while True:  # sent, and sent again where that cannot repeat work (see the class)
            connection = self._pool.take_idle(origin)  # most often: no wait for one
            reused = connection is not None
            if connection is None:
                connection, reused = await self._pool.acquire(
                    origin, timeouts.get("connect"), timeouts.get("pool")
                )
            try:
                if outgoing is None:  # a POST with its body in memory
                    await connection.send(head, body, read_timeout)  # (no coroutine)
                    if not connection.head.done:
                        await connection.until_head(read_timeout)
                else:
                    await outgoing.exchange(connection, read_timeout)
                break
            except ClosedBeforeSend:
                self._pool.release(connection, origin)  # nothing went out: not a replay
                if not reused:
                    raise  # a server that closes at once is not tried again and again
            except httpx.RemoteProtocolError:
                self._pool.release(connection, origin)
                replayable = outgoing is not None and outgoing.replayable
                if not (reused and replayable and _closed_unanswered(connection)):
                    raise
                replayed = True
            except BaseException:
                connection.close()
                self._pool.release(connection, origin)
                raise
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if replayed:
            extensions["gateway_replayed"] = True
        answer = connection.head
        return WireResponse(
            answer.status,
            WireHeaders(answer.fields),
            ResponseStream(self._pool, connection, origin, read_timeout),
            request,
            extensions,
            answer.encoded,
        )

    async def aclose(self) -> None:
        self._pool.close()


def _closed_unanswered(connection: Connection) -> bool:
    return connection.closed and not connection.received_any


class WireHeaders(httpx.Headers):
    """An answer's fields as received, decoded as latin-1 (what came in goes out, whatever
    the bytes): taken as the connection kept them (name, lower-cased name, value) rather than
    normalised field by field, and looked up without a ``KeyError`` per missing name
    (``get``)."""

    def __init__(self, fields: list[tuple[bytes, bytes, bytes]]) -> None:
        self._list = fields
        self._encoding = "latin-1"

    def __getitem__(self, key: str) -> str:
        value: str | None = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        wanted = key.lower().encode("latin-1")
        found: bytes | None = None
        for _, name, value in self._list:
            if name == wanted:
                found = value if found is None else found + b", " + value
        return default if found is None else found.decode("latin-1")

    def pick(self, names: dict[bytes, str]) -> dict[str, str]:
        """The fields named in ``names`` (lower-cased name → the key to give it), in the order
        of ``names``, repeated ones joined with ", " as ``get`` joins them."""
        found: dict[str, bytes] = {}
        for _, name, value in self._list:
            if name in names:
                key = names[name]
                found[key] = found[key] + b", " + value if key in found else value
        if len(found) == 1:  # no order to restore
            ((key, value),) = found.items()
            return {key: value.decode("latin-1")}
        return {key: found[key].decode("latin-1") for key in names.values() if key in found}


class WireResponse(httpx.Response):
    """``httpx.Response`` as httpx builds it from a transport's stream, its attributes set
    at once (httpx's constructor re-encodes every field), and closed without httpx's
    exception mapping (closing ``ResponseStream`` raises none). ``encoded``: its head has a
    ``Content-Encoding`` field (``providers.bodies.plain_body`` reads it then)."""

    # httpx's per-response defaults that are never changed in place, read from the class
    # until set (an attribute fewer to store per response)
    next_request = None
    is_closed = False
    is_stream_consumed = False
    default_encoding = "utf-8"
    _num_bytes_downloaded = 0

    def __init__(
        self,
        status: int,
        headers: WireHeaders,
        stream: ResponseStream,
        request: httpx.Request,
        extensions: dict[str, Any],
        encoded: bool = True,
    ) -> None:
        self.status_code = status
        self.headers = headers
        self._request = request
        self.extensions = extensions
        self.history = []
        self.stream = stream
        self.encoded = encoded

    async def aclose(self) -> None:
        if not self.is_closed:
            self.is_closed = True
            stream: httpx.AsyncByteStream = self.stream  # type: ignore[assignment]
            await stream.aclose()

    def take_body(self) -> bytes | None:
        """The whole body when it is all in already and none of it was read, the response
        then closed (as ``aclose`` closes it, without a coroutine); None while more is to
        come: read it from ``stream``."""
        stream: ResponseStream = self.stream  # type: ignore[assignment]  # (no cast() call)
        body = stream.received()
        if body is not None:
            self.is_closed = True
            stream.release()
        return body


class ResponseStream(httpx.AsyncByteStream):
    """The body as it arrives; closing it hands the connection back (or drops it if unread)."""

    def __init__(
        self, pool: ConnectionPool, connection: Connection, origin: Origin, timeout: Any
    ) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._origin = origin
        self._timeout = timeout
        self._read = False  # a reader was handed out: what is buffered is no longer all

    def __aiter__(self) -> BodyReader:
        self._read = True
        return BodyReader(self, self._connection, self._timeout)

    def received(self) -> bytes | None:
        """The whole body when it is all in and none of it was read, else None."""
        connection = self._connection
        if connection is None or self._read:
            return None
        return connection.received_body()

    def __del__(self) -> None:
        # Dropped without aclose (a bug elsewhere, or a task torn down mid-way): close the
        # socket so the pool forgets the connection once it is gone, instead of leaking it.
        if self._connection is not None:
            self._connection.close()

    async def aclose(self) -> None:
        self.release()

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not connection.body_done:
            connection.close()
        self._pool.release(connection, self._origin)


class BodyReader:
    """The body's pieces as ``Connection.read`` hands them out: each ``__anext__`` is the
    connection's future itself, so a reader waits one level deep.

    ``through(sink, first)`` makes it a relay: the bytes pass through ``sink`` where they are
    parsed, and the reader is then the relay's one owner of the answer, an async generator in
    all but name (``aclose``, and ``asend``/``athrow`` so that ``isinstance`` says so): reading
    past the sink's last bytes, or closing it, releases the connection and tells the sink
    ``closed(finished)``, once. ``finished`` is whether the reader read it to its end."""

    __slots__ = ("__weakref__", "_connection", "_loop", "_sink", "_stream", "_timeout")

    def __init__(self, stream: ResponseStream, connection: Connection | None, timeout: Any):
        self._stream = stream
        self._connection = connection
        self._timeout = timeout
        self._sink: RelaySink | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __aiter__(self) -> BodyReader:
        return self

    def __anext__(self) -> Awaitable[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        return connection.read(self._timeout)

    def through(self, sink: RelaySink, first: bytes) -> BodyReader:
        """The rest of the body (after ``first``, read before) handed through ``sink``."""
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        self._sink = sink
        self._loop = connection.loop  # asyncio.get_running_loop() costs a getpid() on 3.11
        # weakly: a reader dropped unclosed must be collected, to be closed then
        connection.pass_through(sink, first, weakref.WeakMethod(self._finished))
        return self

    def push_to(self, push: Callable[[bytes], bool] | None) -> None:
        """A relay's bytes sent on by ``push`` where they are parsed (``RelaySink.push_to``)."""
        if self._sink is not None:
            self._sink.push_to(push)

    async def asend(self, value: None) -> bytes:
        return await self.__anext__()

    async def athrow(self, error: BaseException, *_: Any) -> bytes:
        self._close(finished=False)
        raise error

    async def aclose(self) -> None:
        self._close(finished=False)

    def __del__(self) -> None:
        # Dropped unclosed (as an async generator would be, its finaliser then closes it):
        # the relay must still end, on the loop rather than wherever the collector runs.
        if self._sink is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._close, False)

    def _finished(self) -> None:
        self._close(finished=True)

    def _close(self, finished: bool) -> None:
        sink, self._sink, self._connection = self._sink, None, None
        if sink is None:
            return
        sink.push_to(None)
        self._stream.release()
        sink.closed(finished)


class RelaySink(Sink, Protocol):
    """A ``Sink`` told once when its relay is over (``finished``: read to its end), that may
    send what it gives on itself."""

    def closed(self, finished: bool) -> None: ...

    def push_to(self, push: Callable[[bytes], bool] | None) -> None:
        """Until told otherwise, offer what ``feed`` would give to ``push``, which sends it on
        and returns True (``feed`` then gives b"": the read keeps waiting, its idle timeout
        counted from then), or returns False to leave it to the read; the body's end, its
        failures and the last bytes still go to the read."""
