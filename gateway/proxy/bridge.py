"""The protocol bridges: Responses and Messages API requests run as chat completions.

A request runs through the pipeline as chat completions (quotas, routing, fallback, metering,
indicators unchanged), and its reply is turned back into the client's API. The translation
itself is in ``gateway.protocols``; a target that serves the client's API natively gets the
client's body instead (``protocols/native.py``), and its answer, already in the client's API,
passes through (``bridge_plan.py`` decides which fields are refused, dropped or sent).

Each request gets an exchange: ``inbound`` is the pipeline's hook (called once the client is
authenticated and its body read) and keeps what the answer's translation needs; ``outbound``
translates the pipeline's reply (JSON, a relayed stream, or an error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import orjson
from starlette.requests import Request

from gateway.errors import GatewayError, NotFound, StoreUnavailable
from gateway.protocols import messages, responses
from gateway.protocols.dropping import translate_dropping
from gateway.protocols.messages_stream import MessagesStream
from gateway.protocols.native import MESSAGES as MESSAGES_API
from gateway.protocols.native import RESPONSES as RESPONSES_API
from gateway.protocols.response_store import ResponseStore, StoredResponse
from gateway.protocols.responses_answer import from_chat_completion
from gateway.protocols.responses_stream import ResponsesStream
from gateway.proxy.auth import Principal
from gateway.proxy.bridge_plan import BridgePlan, plan_for
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


def _failedplan_for(reply: Reply) -> Reply:
    log.exception("a bridged answer could not be translated")
    error = GatewayError("The gateway could not translate the answer.", code="internal_error")
    return error_reply(error, {k: v for k, v in reply.headers.items() if k.startswith("x-")})


def _headers(reply: Reply, media_type: str) -> dict[str, str]:
    """The pipeline reply's headers (indicators, rate limits) for the translated body."""
    headers = {k: v for k, v in reply.headers.items() if k.lower() != "content-length"}
    headers["content-type"] = media_type
    return headers


async def _first_chunk(events: AsyncIterable[bytes]) -> tuple[bytes, AsyncIterable[bytes]]:
    """The stream's first chunk (to tell a native stream from a chat one) and the whole
    stream again."""
    iterator = aiter(events)
    first = await anext(iterator, b"")

    async def again() -> AsyncIterator[bytes]:
        yield first
        async for chunk in iterator:
            yield chunk

    return first, again()


def _native_stream(first: bytes, api: str) -> bool:
    """Whether a stream is the client's API's own (a native answer), not chat chunks: chat
    chunks are ``data:`` lines only, with no ``type`` at the top."""
    if first.lstrip().startswith(b"event:"):
        return True
    marker = b'"type":"response.' if api == RESPONSES_API else b'"type":"message_start"'
    return marker in first.replace(b'": "', b'":"')


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
            translated = _failedplan_for(reply)
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
        self._plan: BridgePlan | None = None

    async def inbound(self, incoming: Incoming, principal: Principal) -> Incoming:
        fields = incoming.fields
        plan = plan_for(RESPONSES_API, principal.tier, fields, "input")
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

        def translate(body: dict[str, Any]) -> responses.ResponsesCall:
            if not plan.native_only:
                responses.check_request(body)
            return responses.translate_request(body, history)

        call, kept, refusals = translate_dropping(translate, fields, plan.native_only)
        plan.settle(call.chat, refusals)
        self._call, self._owner, self._plan = call, principal.user, plan
        sent = fields if plan.native_only else kept
        return plan.incoming(call.chat, _stateless(sent, call))

    async def outbound(self, reply: Reply) -> Reply:
        call, plan = self._call, self._plan
        if call is None or plan is None or reply.status >= 400:
            return reply  # already in OpenAI's error shape
        events = _relayed(reply)
        if events is None:
            assert isinstance(reply.body, bytes)
            document = orjson.loads(reply.body)
            if document.get("object") == "response":  # a native answer, as the upstream gave it
                await self._keep(document)
                return reply._replace(headers=plan.headers(_headers(reply, JSON)))
            answer = from_chat_completion(document, call, self._response_id, self._created_at)
            if "model_source_indicator" in document:
                answer["model_source_indicator"] = document["model_source_indicator"]
            await self._keep(answer)
            body = orjson.dumps(answer)
            return Reply(reply.status, plan.headers(_headers(reply, JSON)), body, JSON)
        first, events = await _first_chunk(events)
        headers = {**plan.headers(_headers(reply, SSE)), **SSE_HEADERS}
        if _native_stream(first, RESPONSES_API):
            return Reply(reply.status, headers, _kept_stream(events, self._keep), SSE)
        stream = ResponsesStream(
            call,
            self._response_id,
            self._created_at,
            str(call.chat.get("model") or ""),
            on_final=self._keep,
        )
        return Reply(reply.status, headers, stream.events(events), SSE)

    async def _keep(self, answer: dict[str, Any]) -> None:
        call = self._call
        if call is None or not call.store or not isinstance(answer.get("id"), str):
            return
        try:
            await self._store.put(
                self._owner, StoredResponse(answer, call.input_items, call.history)
            )
        except StoreError:
            log.warning("response %s could not be stored", answer.get("id"))


def _stateless(body: dict[str, Any], call: responses.ResponsesCall) -> dict[str, Any]:
    """The Responses body for a native upstream: the gateway keeps the conversation (its
    ``store`` and ``previous_response_id``), so the upstream gets the whole input and keeps
    nothing. Item ids the gateway made up, or the upstream answered earlier, are left out:
    an upstream that stores nothing would look them up in vain."""
    out = {k: v for k, v in body.items() if k not in ("previous_response_id", "store")}
    out["store"] = False
    if call.history:
        items = [*call.history, *call.input_items]
        out["input"] = [{k: v for k, v in item.items() if k != "id"} for item in items]
    return out


async def _kept_stream(
    events: AsyncIterable[bytes], keep: Callable[[dict[str, Any]], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """A native Responses stream relayed as it is; the final Response (in the
    ``response.completed`` event) is stored before that event goes out."""
    async for chunk in events:
        if b"response.completed" in chunk or b"response.incomplete" in chunk:
            for event in chunk.split(b"\n\n"):
                document = _event_data(event)
                if document.get("type") in ("response.completed", "response.incomplete"):
                    response = document.get("response")
                    if isinstance(response, dict):
                        await keep(response)
        yield chunk


def _event_data(event: bytes) -> dict[str, Any]:
    lines = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
    try:
        document = orjson.loads(b"\n".join(lines)) if lines else None
    except orjson.JSONDecodeError:
        return {}
    return document if isinstance(document, dict) else {}


class MessagesBridge:
    """``POST /v1/messages``: the answer and every error in the Messages API's shape."""

    async def handle(self, pipeline: Pipeline, request: Request) -> Reply:
        exchange = _MessagesExchange()
        reply = await pipeline.handle(request, MESSAGES, exchange.inbound)
        try:
            translated = await exchange.outbound(reply)
        except Exception:
            translated = await exchange.outbound(_failedplan_for(reply))
        return translated._replace(after=reply.after)


class _MessagesExchange:
    def __init__(self) -> None:
        self._call: messages.MessagesCall | None = None
        self._plan: BridgePlan | None = None

    async def inbound(self, incoming: Incoming, principal: Principal) -> Incoming:
        fields = incoming.fields
        plan = plan_for(MESSAGES_API, principal.tier, fields, "messages")
        call, kept, refusals = translate_dropping(
            messages.translate_request, fields, plan.native_only
        )
        plan.settle(call.chat, refusals)
        self._call, self._plan = call, plan
        sent = fields if plan.native_only else kept
        return plan.incoming(call.chat, sent)

    async def outbound(self, reply: Reply) -> Reply:
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
            elif document.get("type") == "message":  # a native answer, as the upstream gave it
                return reply._replace(headers=self._headers(reply, JSON))
            else:
                body = messages.from_chat_completion(document)
            return Reply(reply.status, self._headers(reply, JSON), orjson.dumps(body), JSON)
        first, events = await _first_chunk(events)
        headers = {**self._headers(reply, SSE), **SSE_HEADERS}
        if _native_stream(first, MESSAGES_API):
            return Reply(reply.status, headers, events, SSE)
        model = str(self._call.chat.get("model") or "") if self._call else ""
        stream = MessagesStream(messages.new_message_id(), model)
        return Reply(reply.status, headers, stream.events(events), SSE)

    def _headers(self, reply: Reply, media_type: str) -> dict[str, str]:
        if self._plan is None:
            return _headers(reply, media_type)
        return self._plan.headers(_headers(reply, media_type))
