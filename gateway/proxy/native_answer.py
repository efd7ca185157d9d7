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
from gateway.proxy.streaming import CUT, IDLE_TIMEOUT, StreamResult, cut_kind, offered, relayed

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
    relay = _NativeRelay(ctx, opened, NativeTap(api), max_event_bytes, end)
    ctx.relayed = True
    relaying(ctx)
    return Reply(200, {**headers, **SSE_HEADERS}, relay, SSE)


class _NativeRelay:
    """The native stream relayed with a ``NativeTap`` reading it. Over the gateway's own
    transport it is the connection's sink (as ``streaming.SSERelay`` is): each chunk is read
    where it is parsed, and sent on from there once ``push_to`` says how; over any other body
    an async generator does the same."""

    def __init__(
        self, ctx: RequestContext, opened: Opened, tap: NativeTap, max_event_bytes: int, end: End
    ) -> None:
        self._ctx, self._opened, self._tap, self._end = ctx, opened, tap, end
        self._max_event = max_event_bytes
        self._splitter = EventSplitter(max_event_bytes)
        self._push: Callable[[bytes], bool] | None = None
        self.result = StreamResult()

    def __aiter__(self) -> AsyncIterator[bytes]:
        self.result.first_chunk_at = time.perf_counter()
        rest = self._opened.rest
        assert rest is not None
        return relayed(self, self._opened.first_chunk, rest, self._opened.response)

    def push_to(self, push: Callable[[bytes], bool] | None) -> None:
        self._push = push

    def feed(self, chunk: bytes) -> bytes:
        if complete := self._splitter.feed(chunk):
            self._tap.feed(complete)
            self.result.bytes_out += len(complete)
        return offered(self._push, complete)

    def end(self) -> bytes:
        tap, result = self._tap, self.result
        tail = self._splitter.feed(b"\n\n") if self._splitter.pending() else b""
        if tail:
            tap.feed(tail)
        if tap.completed:
            return tail
        if tap.failed:
            result.error = UpstreamError("The upstream reported an error mid-stream.")
            result.upstream_error = True
            return tail
        result.error = UpstreamError("The upstream stream ended before it was complete.")
        result.upstream_cut = CUT
        return tail + tap.error_event(result.error.message, "stream_cut")

    def fail(self, error: Exception) -> bytes:
        result = self.result
        if isinstance(error, EventTooLarge):
            result.error = UpstreamError(
                f"An upstream stream event exceeded the gateway's {self._max_event} byte limit."
            )
            return self._tap.error_event(result.error.message, "event_too_large")
        if not isinstance(error, httpx.TransportError):
            raise error
        result.upstream_cut = cut_kind(error)
        if result.upstream_cut == IDLE_TIMEOUT:
            result.error = UpstreamTimeout("The upstream stream stalled (idle timeout).")
        else:
            result.error = UpstreamError("The upstream connection was lost mid-stream.")
        return self._tap.error_event(result.error.message, result.upstream_cut)

    def closed(self, finished: bool) -> None:
        ctx, tap, result = self._ctx, self._tap, self.result
        result.last_chunk_at = time.perf_counter()
        result.client_gone = not finished
        result.completed, result.events, result.usage = tap.completed, tap.events, tap.usage
        ctx.stream, ctx.usage = result, result.usage
        ctx.upstream_ended = result.last_chunk_at
        ctx.upstream_failure = result.upstream_cut
        if result.error is not None:
            ctx.fail(result.error)
        elif result.client_gone:
            ctx.status = 499
        self._end(ctx)
