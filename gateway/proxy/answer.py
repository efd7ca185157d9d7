"""An upstream's answer shaped into the reply: JSON read whole, SSE or bytes relayed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import httpx
import orjson

from gateway.config.model import Settings
from gateway.errors import UpstreamError
from gateway.protocols.native import native_api
from gateway.providers import anthropic
from gateway.providers.anthropic_stream import StreamTranslator
from gateway.providers.bodies import read_up_to
from gateway.providers.openai import forwarded_headers
from gateway.proxy.attempt_outcome import Opened
from gateway.proxy.context import RequestContext
from gateway.proxy.native_answer import native_reply
from gateway.proxy.reply import Reply
from gateway.proxy.source_indicators import SourceIndicators, into_first_event, spliced
from gateway.proxy.streaming import SSERelay, StreamResult, cut_kind

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
End = Callable[[RequestContext], None]


class Answers:
    """Builds replies; a relayed one calls ``relaying(ctx)`` when handed out and ``end(ctx)``
    after its last byte, whichever way it ends."""

    def __init__(
        self, settings: Settings, relaying: End, end: End, indicators: SourceIndicators
    ) -> None:
        self._settings = settings
        self._indicators = indicators
        self._relaying = relaying
        self._end = end

    async def reply(self, ctx: RequestContext, opened: Opened, wants_usage: bool) -> Reply:
        response = opened.response
        headers = ctx.indicator(forwarded_headers(response))
        # forwarded as the answer's headers give it (repeats joined), found there already
        content_type = headers.get("content-type", "")
        if ctx.endpoint.bridged and (api := native_api(response)) is not None:
            return native_reply(
                ctx,
                opened,
                api,
                headers,
                max_event_bytes=self._settings.max_sse_event_bytes,
                relaying=self._relaying,
                end=self._end,
            )
        translator = None
        if opened.model.upstream.api == "anthropic":  # translated; OpenAI's is relayed as is
            opened, translator = self._from_anthropic(opened, content_type)
        if opened.rest is not None and content_type.startswith("text/event-stream"):
            return self._stream(ctx, opened, headers, wants_usage, translator)
        if opened.rest is not None and not ctx.endpoint.binary_response:
            await response.aclose()
            raise UpstreamError(
                f"The upstream answered a streamed request with {content_type[:60]!r} instead "
                "of an event stream."
            )
        if opened.rest is not None and not content_type.startswith("application/json"):
            return self._relay_bytes(ctx, opened, headers)
        body = opened.first_chunk
        if opened.rest is not None:
            body = await _read_rest(ctx, opened, self._settings.max_upstream_body_bytes)
            ctx.upstream_opened = time.perf_counter()  # the whole answer is in hand
        ctx.upstream_ended = time.perf_counter()
        ctx.status = response.status_code
        body = self._read_json_answer(ctx, body)
        return Reply(response.status_code, headers, body, None)

    def _read_json_answer(self, ctx: RequestContext, body: bytes) -> bytes:
        """Pick usage (and image count) out of a JSON answer; add the indicator when set."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(document, dict):
            return body
        if ctx.trace is not None:
            ctx.trace.answer(document)
        usage = document.get("usage")
        ctx.usage = usage if isinstance(usage, dict) else None
        if ctx.usage is None:
            ctx.completion_chars = _answer_chars(document)
        if ctx.endpoint.name == "images.generations" and isinstance(document.get("data"), list):
            ctx.images = len(document["data"])
        if self._settings.model_source_indicator and ctx.indicators:
            indicator = self._indicators.object_bytes(ctx)
            if indicator is not None:
                return spliced(body, indicator) or body
        return body

    def _from_anthropic(
        self, opened: Opened, content_type: str
    ) -> tuple[Opened, StreamTranslator | None]:
        """The Messages API answer in OpenAI's shape: an answer read whole translated at
        once, a stream event by event as it is relayed."""
        name = opened.model.upstream_model
        if opened.rest is None:
            opened.first_chunk = anthropic.chat_completion(opened.first_chunk, name)
            return opened, None
        if not content_type.startswith("text/event-stream"):
            return opened, None
        translator = StreamTranslator(name, self._settings.max_sse_event_bytes)
        rest = translator.translate(opened.first_chunk, opened.rest)
        return Opened(opened.model, opened.response, b"", rest, opened.records), translator

    def _stream(
        self,
        ctx: RequestContext,
        opened: Opened,
        headers: dict[str, str],
        wants_usage: bool,
        translator: StreamTranslator | None = None,
    ) -> Reply:
        assert opened.rest is not None

        def on_end(result: StreamResult) -> None:
            ctx.stream = result
            ctx.usage = result.usage
            ctx.upstream_ended = result.last_chunk_at
            ctx.upstream_failure = result.upstream_cut
            if translator is not None and translator.error is not None:
                ctx.fail(translator.error)  # the upstream's own in-stream error
            elif result.error is not None:
                ctx.fail(result.error)
            elif result.client_gone:
                ctx.status = 499  # nginx's "client closed request": the client left mid-stream
            self._end(ctx)

        edit = None
        if self._settings.model_source_indicator and ctx.indicators:
            indicator = self._indicators.object_bytes(ctx)
            if indicator is not None:
                edit = partial(into_first_event, indicator=indicator)
        relay = SSERelay(
            opened.first_chunk,
            opened.rest,
            opened.response,
            client_wants_usage=wants_usage,
            on_end=on_end,
            max_event_bytes=self._settings.max_sse_event_bytes,
            first_event_edit=edit,
        )
        ctx.relayed = True
        self._relaying(ctx)
        return Reply(200, {**headers, **SSE_HEADERS}, relay, "text/event-stream")

    def _relay_bytes(self, ctx: RequestContext, opened: Opened, headers: dict[str, str]) -> Reply:
        rest = opened.rest
        assert rest is not None
        end = self._end

        async def chunks() -> AsyncIterator[bytes]:
            try:
                if opened.first_chunk:
                    yield opened.first_chunk
                async for chunk in rest:
                    yield chunk
            except httpx.HTTPError as exc:
                ctx.status = 502  # cut mid-body: abort so the client sees an incomplete transfer
                ctx.upstream_failure = cut_kind(exc)
                raise
            except (asyncio.CancelledError, GeneratorExit):
                ctx.status = 499  # the client went away
                raise
            finally:
                ctx.upstream_ended = time.perf_counter()
                await opened.response.aclose()
                end(ctx)

        ctx.relayed = True
        self._relaying(ctx)
        return Reply(opened.response.status_code, headers, chunks(), None)


async def _read_rest(ctx: RequestContext, opened: Opened, limit: int) -> bytes:
    """A JSON answer that was opened as a stream, read whole: capped, and due within the
    upstream's idle timeout; a cut or a stall is the upstream's failure (502)."""
    assert opened.rest is not None
    try:
        async with asyncio.timeout(opened.model.upstream.idle_timeout_s):
            return await read_up_to(opened.rest, limit, opened.first_chunk)
    except (httpx.HTTPError, TimeoutError) as exc:
        ctx.upstream_failure = cut_kind(exc)
        raise UpstreamError("The upstream answer was cut short or stalled.") from None
    finally:
        await opened.response.aclose()


def _answer_chars(document: dict[str, Any]) -> int:
    total = 0
    for choice in document.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            total += len(text) if isinstance(text, str) else 0
    return total
