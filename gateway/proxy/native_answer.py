"""An answer in the client's own API (a native pass-through), relayed as it came, usage read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import orjson

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.protocols.native import NativeTap, chat_usage
from gateway.providers.sse import EventSplitter, EventTooLarge
from gateway.proxy.attempt_outcome import Opened
from gateway.proxy.context import RequestContext
from gateway.proxy.reply import JSON, Reply
from gateway.proxy.streaming import CUT, IDLE_TIMEOUT, StreamResult, cut_kind

SSE = "text/event-stream"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
End = Callable[[RequestContext], None]


def native_reply(
    ctx: RequestContext,
    opened: Opened,
    api: str,
    headers: dict[str, str],
    *,
    max_event_bytes: int,
    relaying: End,
    end: End,
) -> Reply:
    """The upstream's answer as it is: JSON (read whole already) with its usage picked out,
    or its event stream relayed with a ``NativeTap`` reading it. An answer read whole that is
    not a JSON object is a 502 (the client's SDK could not read it)."""
    response = opened.response
    if opened.rest is None:
        ctx.upstream_ended = time.perf_counter()
        ctx.status = response.status_code
        try:
            document = orjson.loads(opened.first_chunk)
        except orjson.JSONDecodeError:
            document = None
        if not isinstance(document, dict):  # relayed, it would reach the client as a 200
            raise UpstreamError("The upstream's answer is not a JSON object.")
        ctx.usage = chat_usage(api, document.get("usage"))
        if ctx.trace is not None:
            ctx.trace.answer(document)  # the response model (finish reasons are chat's)
        return Reply(response.status_code, headers, opened.first_chunk, JSON)
    if not response.headers.get("content-type", "").startswith(SSE):
        raise UpstreamError("The upstream answered a streamed request without an event stream.")
    relay = _relay(ctx, opened, NativeTap(api), max_event_bytes, end)
    ctx.relayed = True
    relaying(ctx)
    return Reply(200, {**headers, **SSE_HEADERS}, relay, SSE)


async def _relay(
    ctx: RequestContext, opened: Opened, tap: NativeTap, max_event_bytes: int, end: End
) -> AsyncIterator[bytes]:
    result = StreamResult(first_chunk_at=time.perf_counter())
    splitter = EventSplitter(max_event_bytes)
    rest = opened.rest
    assert rest is not None
    try:
        chunk = opened.first_chunk
        while True:
            if complete := splitter.feed(chunk):
                tap.feed(complete)
                result.bytes_out += len(complete)
                yield complete
            next_chunk = await anext(rest, None)
            if next_chunk is None:
                break
            chunk = next_chunk
        if tail := splitter.feed(b"\n\n") if splitter.pending() else b"":
            tap.feed(tail)
            yield tail
        if not tap.completed:
            if tap.failed:
                result.error = UpstreamError("The upstream reported an error mid-stream.")
                result.upstream_error = True
            else:
                result.error = UpstreamError("The upstream stream ended before it was complete.")
                result.upstream_cut = CUT
                yield tap.error_event(result.error.message, "stream_cut")
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        result.upstream_cut = cut_kind(exc)
        if result.upstream_cut == IDLE_TIMEOUT:
            result.error = UpstreamTimeout("The upstream stream stalled (idle timeout).")
        else:
            result.error = UpstreamError("The upstream connection was lost mid-stream.")
        yield tap.error_event(result.error.message, result.upstream_cut)
    except EventTooLarge:
        result.error = UpstreamError(
            f"An upstream stream event exceeded the gateway's {max_event_bytes} byte limit."
        )
        yield tap.error_event(result.error.message, "event_too_large")
    except BaseException:
        result.client_gone = True
        raise
    finally:
        result.last_chunk_at = time.perf_counter()
        result.completed, result.events, result.usage = tap.completed, tap.events, tap.usage
        await opened.response.aclose()
        ctx.stream, ctx.usage = result, result.usage
        ctx.upstream_ended = result.last_chunk_at
        ctx.upstream_failure = result.upstream_cut
        if result.error is not None:
            ctx.fail(result.error)
        elif result.client_gone:
            ctx.status = 499
        end(ctx)
