"""httpx's transport interface over aiohttp, raising exactly the httpx error each failure is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


class PreciseAiohttpTransport(AiohttpTransport):
    """httpx-aiohttp maps every aiohttp connection error to ``httpx.ConnectTimeout``; here a
    refused connection is a ``ConnectError``, a stall a ``ReadTimeout``, a cut a ``ReadError``,
    so the rest of the gateway needs to know nothing about aiohttp."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _precise():
            response = await super().handle_async_request(request)
        response.stream = _PreciseStream(response.stream)
        return response


class _PreciseStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream | httpx.SyncByteStream) -> None:
        assert isinstance(stream, httpx.AsyncByteStream)
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _precise():
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        with _precise():
            await self._stream.aclose()


@contextmanager
def _precise() -> Iterator[None]:
    try:
        yield
    except httpx.HTTPError as exc:
        cause = exc.__cause__
        if isinstance(cause, aiohttp.ClientConnectorError):
            raise httpx.ConnectError(str(exc)) from cause
        if isinstance(cause, aiohttp.ServerTimeoutError | asyncio.TimeoutError):
            raise httpx.ReadTimeout(str(exc)) from cause
        if isinstance(cause, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
            raise httpx.ReadError(str(exc)) from cause
        raise
