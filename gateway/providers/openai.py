"""The upstream transport, request building, and error mapping at the boundary."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import httpx
import orjson

from gateway.config.model import Model, Upstream
from gateway.errors import UpstreamError
from gateway.secret import Secret

Transport = httpx.AsyncBaseTransport

# Upstream response headers worth passing to the client; everything else is the gateway's.
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-disposition")
MAX_ERROR_BODY = 64 * 1024
_KEYLIKE = re.compile(r"\b(?:sk|tgp|pk|rk|key)[-_][A-Za-z0-9_\-*.]{6,}|\bBearer\s+\S+", re.I)


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
        from httpx_aiohttp import AiohttpTransport

        return AiohttpTransport(limits=limits)
    return httpx.AsyncHTTPTransport(limits=limits)


def build_request(
    model: Model,
    path: str,
    *,
    json_body: bytes | None = None,
    form: tuple[dict[str, Any], list[Any]] | None = None,
    api_key: Secret | None,
    request_id: str,
    accept: str | None = None,
) -> httpx.Request:
    """A POST to ``model``'s upstream: JSON bytes, or multipart (text fields, httpx files)."""
    upstream = model.upstream
    url = _url(upstream.base_url, path)
    headers = [
        (b"accept-encoding", b"identity"),  # the relay scans SSE bytes; keep them plain
        (b"x-request-id", request_id.encode()),
    ]
    if accept:
        headers.append((b"accept", accept.encode()))
    if api_key is not None:
        headers.append((b"authorization", b"Bearer " + api_key.reveal().encode()))
    extensions = {"timeout": _timeouts(upstream)}
    if form is not None:
        data, files = form
        return httpx.Request(
            "POST", url, data=data, files=files, headers=headers, extensions=extensions
        )
    # Headers as bytes and a ready stream: httpx's own encoding of them was most of the
    # cost of building a request.
    body = json_body or b""
    headers += [
        (b"host", url.netloc),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
    ]
    return httpx.Request(
        "POST", url, headers=headers, stream=httpx.ByteStream(body), extensions=extensions
    )


@functools.lru_cache(maxsize=512)
def _url(base_url: str, path: str) -> httpx.URL:
    """Parsed once per upstream and path: parsing was a third of building each request."""
    return httpx.URL(base_url + path)


def _timeouts(upstream: Upstream) -> dict[str, float]:
    return {
        "connect": upstream.connect_timeout_s,
        "read": upstream.idle_timeout_s,
        "write": upstream.idle_timeout_s,
        "pool": upstream.connect_timeout_s,
    }


def network_error_kind(exc: httpx.HTTPError) -> str:
    """``timeout``, ``connect_error`` or ``read_error``.

    httpx-aiohttp maps every aiohttp connection error to ``httpx.ConnectTimeout``, so its cause is
    consulted first: a refused connection is not a timeout.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError):
        return "connect_error"
    if isinstance(cause, aiohttp.ServerTimeoutError | TimeoutError):
        return "timeout"
    if isinstance(cause, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return "read_error"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "connect_error" if isinstance(exc, httpx.ConnectError) else "read_error"


class AnswerTooLarge(UpstreamError):
    """An upstream answer past the configured size; it is not read further."""

    code, label = "upstream_answer_too_large", "too_large"


def plain_body(response: httpx.Response) -> bool:
    """The gateway asks for identity encoding and never decodes: anything else is refused."""
    return response.headers.get("content-encoding", "identity").lower() in ("identity", "")


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The rest of the body, up to ``limit`` bytes (``AnswerTooLarge`` past it), then closed."""
    try:
        return await read_up_to(body_chunks(response), limit)
    finally:
        await response.aclose()


async def read_up_to(chunks: AsyncIterator[bytes], limit: int, start: bytes = b"") -> bytes:
    parts, size = [start], len(start)
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(f"The upstream answer exceeds the gateway's {limit} byte limit.")
        parts.append(chunk)
    return b"".join(parts)


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, never decoded (see ``plain_body``); read straight from
    the transport's stream, skipping httpx's decoder layers on every chunk."""
    if isinstance(response.stream, httpx.AsyncByteStream):
        return aiter(response.stream)
    return response.aiter_raw()


def forwarded_headers(response: httpx.Response) -> dict[str, str]:
    return {
        name: response.headers[name]
        for name in FORWARDED_RESPONSE_HEADERS
        if name in response.headers
    }


def upstream_error(
    status: int, body: bytes, content_type: str, secrets: Iterable[Secret | None] = ()
) -> UpstreamError:
    """Normalise Together's ``{"id", "error"}``, vLLM's flat shape and plain text alike."""
    message, type_, code, param = _parse_error_body(body, content_type)
    message = redact(message or f"Upstream answered HTTP {status}", secrets)
    return UpstreamError(
        message,
        status=status,
        type=type_ or _default_type(status),
        code=code,
        param=param,
    )


def _parse_error_body(
    body: bytes, content_type: str
) -> tuple[str | None, str | None, str | None, str | None]:
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        error = document.get("error", document)
        if isinstance(error, str):
            return error, None, None, None
        if isinstance(error, dict):
            code = error.get("code")
            return (
                _text(error.get("message") or error.get("detail")),
                _text(error.get("type")),
                None if code is None or isinstance(code, int) else str(code),
                _text(error.get("param")),
            )
    text = body[:500].decode("utf-8", "replace").strip()
    return (text or None), None, None, None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _default_type(status: int) -> str:
    if status == 429:
        return "rate_limit_error"
    if status in (401, 403):
        return "authentication_error" if status == 401 else "permission_error"
    return "invalid_request_error" if 400 <= status < 500 else "api_error"


def redact(text: str, secrets: Iterable[Secret | None] = ()) -> str:
    for secret in secrets:
        if secret is not None and secret.reveal():
            text = text.replace(secret.reveal(), "[redacted]")
    return _KEYLIKE.sub("[redacted]", text)
