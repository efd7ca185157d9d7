"""The one pooled upstream client every provider sends through, and its failures classified."""

from __future__ import annotations

import httpx

Transport = httpx.AsyncBaseTransport


def create_transport(
    kind: str = "native",
    max_connections: int = 10_000,
    *,
    max_header_bytes: int = 64 * 1024,
    max_headers: int = 100,
) -> Transport:
    """One pooled transport for every upstream.

    The gateway sends through httpx's transport interface directly (``handle_async_request``):
    ``AsyncClient``'s auth, redirect, cookie and hook handling is work a proxy does not need.
    ``native`` is the gateway's own HTTP/1.1 client (``gateway.wire``, the fastest measured);
    ``aiohttp`` runs the interface over aiohttp's pool; ``httpx`` keeps httpx's own (the
    header caps apply to ``native`` only; the others bring their own limits).
    """
    if kind == "native":
        from gateway.wire import NativeTransport

        return NativeTransport(
            max_connections, max_header_bytes=max_header_bytes, max_headers=max_headers
        )
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=200)
    if kind == "aiohttp":
        from gateway.providers.aiohttp_transport import PreciseAiohttpTransport

        return PreciseAiohttpTransport(limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


def network_error_kind(exc: httpx.HTTPError) -> str:
    """``timeout``, ``connect_error`` or ``read_error`` (every transport raises httpx's own
    exception types; the aiohttp one is made precise in ``aiohttp_transport``)."""
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "connect_error" if isinstance(exc, httpx.ConnectError) else "read_error"
