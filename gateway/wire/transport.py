"""httpx's transport interface over the gateway's own HTTP/1.1 connections.

Callers keep httpx's API (``httpx.Request`` in, ``httpx.Response`` out, httpx's exceptions), so
respx and ``httpx.MockTransport`` still stand in for it in tests.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.wire.connection import Connection
from gateway.wire.pool import ConnectionPool, Origin

DEFAULT_PORTS = {"http": 80, "https": 443}


class NativeTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        max_connections: int = 10_000,
        keepalive_expiry_s: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        # Below uvicorn's 5 s keep-alive (vLLM, many self-hosted upstreams), so an idle
        # connection is dropped here before the server drops it under a request.
        self._pool = ConnectionPool(
            max_connections, keepalive_expiry_s, ssl_context or httpx.create_ssl_context()
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Unsupported URL scheme {url.scheme!r}")
        origin: Origin = (url.scheme, url.host, url.port or DEFAULT_PORTS[url.scheme])
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read")
        connection = await self._send(request, origin, timeouts)
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=ResponseStream(self._pool, connection, origin, read_timeout),
            request=request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        self._pool.close()

    async def _send(
        self, request: httpx.Request, origin: Origin, timeouts: dict[str, float | None]
    ) -> Connection:
        """Send and wait for the head. A reused connection found closed by the server without
        a byte of answer (it timed out idle as the request went out) is replaced by another;
        any failure on a fresh connection is raised."""
        while True:
            connection, reused = await self._pool.acquire(
                origin, timeouts.get("connect"), timeouts.get("pool")
            )
            try:
                await _exchange(connection, request, timeouts.get("read"))
                return connection
            except httpx.RemoteProtocolError:
                self._pool.release(connection, origin)
                if not (reused and connection.closed and not connection.received_any):
                    raise
            except BaseException:
                connection.close()
                self._pool.release(connection, origin)
                raise


async def _exchange(connection: Connection, request: httpx.Request, timeout: float | None) -> None:
    headers = request.headers
    stream = request.stream
    body: bytes | None = None
    if isinstance(stream, httpx.ByteStream):
        body = b"".join(stream)  # one piece, already in memory
    chunked = body is None and "content-length" not in headers
    head = _head(request, chunked)
    if body is not None:
        await connection.exchange(head, body, timeout)
    else:
        await connection.exchange_streaming(head, stream, chunked, timeout)


def _head(request: httpx.Request, chunked: bool) -> bytes:
    lines = [b"%b %b HTTP/1.1" % (request.method.encode(), request.url.raw_path)]
    for name, value in request.headers.raw:
        if chunked and name.lower() == b"transfer-encoding":
            continue
        lines.append(b"%b: %b" % (name, value))
    if chunked:
        lines.append(b"transfer-encoding: chunked")
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


class ResponseStream(httpx.AsyncByteStream):
    """The body as it arrives; closing it hands the connection back (or drops it if unread)."""

    def __init__(
        self, pool: ConnectionPool, connection: Connection, origin: Origin, timeout: Any
    ) -> None:
        self._pool = pool
        self._connection: Connection | None = connection
        self._origin = origin
        self._timeout = timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        if connection is None:
            raise httpx.StreamClosed()
        while (chunk := await connection.next_chunk(self._timeout)) is not None:
            yield chunk

    def __del__(self) -> None:
        # Dropped without aclose (a bug elsewhere, or a task torn down mid-way): close the
        # socket so the pool forgets the connection once it is gone, instead of leaking it.
        if self._connection is not None:
            self._connection.close()

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if not connection.body_done:
            connection.close()
        self._pool.release(connection, self._origin)
