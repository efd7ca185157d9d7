"""An upstream answer's body: raw bytes as they arrive, never decoded; whole reads capped."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from gateway.errors import UpstreamError
from gateway.wire.transport import WireResponse


class AnswerTooLarge(UpstreamError):
    """An upstream answer past the configured size; it is not read further."""

    code, label = "upstream_answer_too_large", "too_large"


def plain_body(response: httpx.Response) -> bool:
    """The gateway asks for identity encoding and never decodes: anything else is refused."""
    if type(response) is WireResponse and not response.encoded:
        return True  # no Content-Encoding field: nothing to look up
    return response.headers.get("content-encoding", "identity").lower() in ("identity", "")


def body_in_hand(response: httpx.Response, limit: int) -> bytes | None:
    """The whole body when all of it came in already (a JSON answer most often comes with its
    head), the response then closed, as ``read_body`` reads it without a coroutine; None
    when it must be read (``read_body``)."""
    if type(response) is WireResponse and (body := response.take_body()) is not None:
        if len(body) > limit:
            raise _too_large(limit)
        return body
    return None


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The rest of the body, up to ``limit`` bytes (``AnswerTooLarge`` past it), then closed."""
    body = body_in_hand(response, limit)
    if body is not None:  # nothing to wait for
        return body
    try:
        return await read_up_to(body_chunks(response), limit)
    finally:
        await response.aclose()


async def read_up_to(chunks: AsyncIterator[bytes], limit: int, start: bytes = b"") -> bytes:
    parts, size = [start], len(start)
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        parts.append(chunk)
    return b"".join(parts)


def _too_large(limit: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"The upstream answer exceeds the gateway's {limit} byte limit.")


def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, never decoded (see ``plain_body``); read straight from
    the transport's stream, skipping httpx's decoder layers on every chunk."""
    if isinstance(response.stream, httpx.AsyncByteStream):
        return aiter(response.stream)
    return response.aiter_raw()
