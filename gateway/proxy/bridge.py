"""The protocol bridges: Responses and Messages API requests run as chat completions.

A request runs through the pipeline as chat completions (quotas, routing, fallback, metering,
indicators unchanged), and its reply is turned back into the client's API. The translation
itself is in ``gateway.protocols``.

Each request gets an exchange: ``inbound`` is the pipeline's hook (called once the client is
authenticated and its body read) and keeps what the answer's translation needs; ``outbound``
translates the pipeline's reply (JSON, a relayed stream, or an error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import orjson
from starlette.requests import Request

from gateway.errors import GatewayError, NotFound, StoreUnavailable
from gateway.protocols import messages, responses
from gateway.protocols.messages_stream import MessagesStream
from gateway.protocols.response_store import ResponseStore, StoredResponse
from gateway.protocols.responses_answer import from_chat_completion
from gateway.protocols.responses_stream import ResponsesStream
from gateway.proxy.auth import Principal
from gateway.proxy.incoming import Incoming
from gateway.proxy.pipeline import Pipeline
from gateway.proxy.reply import JSON, Reply, error_reply
from gateway.proxy.routing import MESSAGES, RESPONSES
from gateway.store.port import StoreError

log = logging.getLogger("gateway")
SSE = "text/event-stream"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


class Bridge(Protocol):
    async def handle(self, pipeline: Pipeline, request: Request) -> Reply: ...


def _relayed(reply: Reply) -> AsyncIterable[bytes] | None:
    """The reply's event stream (a relay, or a cached stream's events in one piece), or None
    for a JSON answer."""
    if not isinstance(reply.body, bytes):
        return reply.body
    if reply.media_type == SSE:
        return _once(reply.body)
    return None


async def _once(chunk: bytes) -> AsyncIterator[bytes]:
    yield chunk


def _failed_translation(reply: Reply) -> Reply:
    log.exception("a bridged answer could not be translated")
    error = GatewayError("The gateway could not translate the answer.", code="internal_error")
    return error_reply(error, {k: v for k, v in reply.headers.items() if k.startswith("x-")})


def _headers(reply: Reply, media_type: str) -> dict[str, str]:
    """The pipeline reply's headers (indicators, rate limits) for the translated body."""
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-length"}
    headers["content-type"] = media_type
    return headers


class ResponsesBridge:
    """``POST /v1/responses``."""

    def __init__(self, store: ResponseStore, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def handle(self, pipeline: Pipeline, request: Request) -> Reply:
        exchange = _ResponsesExchange(self._store, int(self._clock()))
        reply = await pipeline.handle(request, RESPONSES, exchange.inbound)
        try:
            translated = await exchange.outbound(reply)
        except Exception:
            translated = _failed_translation(reply)
        except BaseException:  # cancelled: nothing will be sent, the request ends here
            if reply.after is not None:
                reply.after()
            raise
        return translated._replace(after=reply.after)


class _ResponsesExchange:
    def __init__(self, store: ResponseStore, created_at: int) -> None:
        self._store = store
        self._created_at = created_at
        self._response_id = responses.new_id("resp")
        self._call: responses.ResponsesCall | None = None
        self._owner = ""

    async def inbound(self, incoming: Incoming, principal: Principal) -> Incoming:
        fields = incoming.fields
        responses.check_request(fields)
        history: list[dict[str, Any]] = []
        if (previous := responses.previous_id(fields)) is not None:
            try:
                stored = await self._store.get(principal.user, previous)
            except StoreError:
                raise StoreUnavailable("The response store is unavailable.") from None
            if stored is None:
                raise NotFound(
                    f"Previous response with id '{previous}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = stored.conversation
        self._call = responses.translate_request(fields, history)
        self._owner = principal.user
        return Incoming(self._call.chat)

    async def outbound(self, reply: Reply) -> Reply:
        call = self._call
        if call is None or reply.status >= 400:
            return reply  # already in OpenAI's error shape
        events = _relayed(reply)
        if events is None:
            assert isinstance(reply.body, bytes)
            document = orjson.loads(reply.body)
            answer = from_chat_completion(document, call, self._response_id, self._created_at)
            if "model_source_indicator" in document:
                answer["model_source_indicator"] = document["model_source_indicator"]
            await self._keep(answer)
            return Reply(reply.status, _headers(reply, JSON), orjson.dumps(answer), JSON)
        stream = ResponsesStream(
            call,
            self._response_id,
            self._created_at,
            str(call.chat.get("model") or ""),
            on_final=self._keep,
        )
        body = stream.events(events)
        return Reply(reply.status, {**_headers(reply, SSE), **SSE_HEADERS}, body, SSE)

    async def _keep(self, answer: dict[str, Any]) -> None:
        call = self._call
        if call is None or not call.store:
            return
        try:
            await self._store.put(
                self._owner, StoredResponse(answer, call.input_items, call.history)
            )
        except StoreError:
            log.warning("response %s could not be stored", self._response_id)


class MessagesBridge:
    """``POST /v1/messages``: the answer and every error in the Messages API's shape."""

    async def handle(self, pipeline: Pipeline, request: Request) -> Reply:
        exchange = _MessagesExchange()
        reply = await pipeline.handle(request, MESSAGES, exchange.inbound)
        try:
            translated = exchange.outbound(reply)
        except Exception:
            translated = exchange.outbound(_failed_translation(reply))
        return translated._replace(after=reply.after)


class _MessagesExchange:
    def __init__(self) -> None:
        self._call: messages.MessagesCall | None = None

    async def inbound(self, incoming: Incoming, principal: Principal) -> Incoming:
        self._call = messages.translate_request(incoming.fields)
        return Incoming(self._call.chat)

    def outbound(self, reply: Reply) -> Reply:
        events = _relayed(reply) if reply.status < 400 else None
        if events is None:
            assert isinstance(reply.body, bytes)
            try:
                document = orjson.loads(reply.body)
            except orjson.JSONDecodeError:
                document = None
            if not isinstance(document, dict):
                return reply
            if reply.status >= 400 or self._call is None:
                error = document.get("error")
                error = error if isinstance(error, Mapping) else {}
                body = messages.error_body(reply.status, error)
            else:
                body = messages.from_chat_completion(document)
            return Reply(reply.status, _headers(reply, JSON), orjson.dumps(body), JSON)
        model = str(self._call.chat.get("model") or "") if self._call else ""
        stream = MessagesStream(messages.new_message_id(), model)
        body_stream = stream.events(events)
        return Reply(reply.status, {**_headers(reply, SSE), **SSE_HEADERS}, body_stream, SSE)
