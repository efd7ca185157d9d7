"""The path of one proxied request: auth → body → route → quota → attempts → relay."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.config.model import Config, Model, Upstream
from gateway.config.runtime import Runtime
from gateway.errors import GatewayError, UpstreamError, error_response
from gateway.http.relay_response import RelayResponse
from gateway.metering import Meter, MeterRequest
from gateway.metering.estimate import estimate_prompt_tokens, stt_audio_ms, tts_audio_ms
from gateway.observe.finish import Finisher
from gateway.observe.metrics import Metrics
from gateway.providers.openai import Transport, build_request, forwarded_headers, read_up_to
from gateway.proxy.attempts import Attempter, AttemptFailed, BuildRequest, Opened
from gateway.proxy.auth import KeyRing, Principal
from gateway.proxy.breaker import Breakers
from gateway.proxy.context import RequestContext, RequestIds
from gateway.proxy.incoming import (
    Incoming,
    json_for_upstream,
    read_incoming,
    requested_max_tokens,
    rewind,
    upload_header,
)
from gateway.proxy.routing import Endpoint, Plan, resolve
from gateway.proxy.streaming import SSERelay, StreamResult
from gateway.secret import Secret

log = logging.getLogger("gateway")
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


@dataclass(frozen=True)
class Gateway:
    """Everything a handler needs, built once by the app factory."""

    config: Config
    keyring: KeyRing
    transport: Transport
    attempter: Attempter
    meter: Meter
    metrics: Metrics
    finisher: Finisher
    breakers: Breakers
    runtime: Runtime
    clock: Callable[[], float]
    created: int  # reported as models' `created`
    request_ids: RequestIds


async def proxy(gateway: Gateway, request: Request, endpoint: Endpoint) -> Response:
    ctx = RequestContext.begin(request.headers.get("x-request-id"), endpoint, gateway.request_ids)
    gateway.metrics.inflight.inc()
    deferred = False
    try:
        response = await _serve(gateway, request, ctx)
        deferred = isinstance(response, RelayResponse)
        return response
    except GatewayError as error:
        ctx.fail(error)
        return error_response(error, ctx.indicator())
    except Exception:
        log.exception("unexpected error serving %s", ctx.request_id)
        internal = GatewayError("The gateway hit an internal error.", code="internal_error")
        ctx.fail(internal)
        return error_response(internal, ctx.indicator())
    finally:
        if not deferred:
            gateway.metrics.inflight.dec()
            gateway.finisher.finish(ctx)


async def _serve(gateway: Gateway, request: Request, ctx: RequestContext) -> Response:
    endpoint = ctx.endpoint
    principal = ctx.principal = gateway.keyring.authenticate(request.headers)
    incoming = await read_incoming(request, endpoint, gateway.config.settings.max_body_bytes)
    if gateway.runtime.log_bodies:
        ctx.debug_body = incoming.fields
    plan = ctx.plan = resolve(
        gateway.config, principal.tier, endpoint, incoming.model, incoming.fields
    )
    ctx.meter_request = await _meter_request(ctx, incoming, plan, principal)
    ctx.admission = await gateway.meter.admit(ctx.meter_request)
    body, streams, wants_usage = json_for_upstream(
        incoming, endpoint, ctx.admission.clamp_max_tokens
    )
    ctx.upstream_started = time.perf_counter()
    try:
        opened = await gateway.attempter.run(
            plan.chain,
            _request_builder(ctx, incoming, body, principal),
            buffered=not (streams or endpoint.binary_response),
            secrets=(principal.byok_key, *(m.upstream.api_key for m in plan.chain)),
            own_credentials=principal.byok,
        )
    except AttemptFailed as failed:
        ctx.records = failed.records
        ctx.upstream_ended = time.perf_counter()
        raise failed.error from None
    ctx.model, ctx.records = opened.model, opened.records
    return await _respond(gateway, ctx, opened, wants_usage)


async def _meter_request(
    ctx: RequestContext, incoming: Incoming, plan: Plan, principal: Principal
) -> MeterRequest:
    endpoint = ctx.endpoint
    audio_ms = 0
    if plan.route == "tts":
        audio_ms = tts_audio_ms(len(str(incoming.fields.get("input", ""))))
    elif incoming.files:
        upload = incoming.files[0][1]
        audio_ms = stt_audio_ms(
            await upload_header(upload),
            upload.size or 0,
            upload.filename or "",
            upload.content_type or "",
        )
    ctx.audio_ms = audio_ms
    requested = requested_max_tokens(incoming.fields) if endpoint.generates_tokens else None
    return MeterRequest(
        request_id=ctx.request_id,
        user=principal.user,
        key_id=principal.key_id,
        tier=principal.tier,
        capability=plan.capability,
        byok=principal.byok,
        prompt_tokens_estimate=estimate_prompt_tokens(incoming.fields),
        max_output_tokens=requested or 0,
        generates_tokens=endpoint.generates_tokens,
        audio_ms_estimate=audio_ms,
        price=plan.chain[0].price,
        images_estimate=_images_requested(incoming, plan),
    )


def _images_requested(incoming: Incoming, plan: Plan) -> int:
    if plan.route != "image":
        return 0
    n = incoming.fields.get("n", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1


def _request_builder(
    ctx: RequestContext,
    incoming: Incoming,
    body: dict[str, Any],
    principal: Principal,
) -> BuildRequest:
    primary = ctx.plan.chain[0].upstream if ctx.plan else None
    accept = "application/octet-stream" if ctx.endpoint.binary_response else None
    path = ctx.endpoint.path

    def build(model: Model) -> httpx.Request | None:
        usable, key = _credential(model, principal, primary)
        if not usable:
            return None
        if incoming.files:
            form = ({**body, "model": model.upstream_model}, rewind(incoming.files))
            return build_request(
                model,
                path,
                form=form,
                api_key=key,
                request_id=ctx.request_id,
                accept=accept,
            )
        body["model"] = model.upstream_model
        return build_request(
            model,
            path,
            json_body=orjson.dumps(body),
            api_key=key,
            request_id=ctx.request_id,
            accept=accept,
        )

    return build


def _credential(
    model: Model, principal: Principal, primary: Upstream | None
) -> tuple[bool, Secret | None]:
    """(may this model be tried, with which key). A BYOK key goes only to the chain's first
    provider; a provider that needs a key and has none is skipped."""
    if principal.byok_key is not None:
        return model.upstream is primary, principal.byok_key
    if model.upstream.requires_key and model.upstream.api_key is None:
        return False, None
    return True, model.upstream.api_key


async def _respond(
    gateway: Gateway, ctx: RequestContext, opened: Opened, wants_usage: bool
) -> Response:
    response = opened.response
    headers = {**forwarded_headers(response), **ctx.indicator()}
    content_type = response.headers.get("content-type", "")
    if opened.rest is not None and content_type.startswith("text/event-stream"):
        return _stream(gateway, ctx, opened, headers, wants_usage)
    if opened.rest is not None and not ctx.endpoint.binary_response:
        await response.aclose()
        raise UpstreamError(
            f"The upstream answered a streamed request with {content_type[:60]!r} instead of "
            "an event stream."
        )
    if opened.rest is not None and not content_type.startswith("application/json"):
        return _relay_binary(gateway, ctx, opened, headers)
    body = opened.first_chunk
    if opened.rest is not None:
        body = await _read_rest(opened, gateway.config.settings.max_upstream_body_bytes)
    ctx.upstream_ended = time.perf_counter()
    ctx.status = response.status_code
    body = _read_json_answer(gateway, ctx, body)
    return Response(body, status_code=response.status_code, headers=headers)


async def _read_rest(opened: Opened, limit: int) -> bytes:
    """A JSON answer that was opened as a stream, read whole: capped, and due within the
    upstream's idle timeout; a cut or a stall is the upstream's failure (502)."""
    assert opened.rest is not None
    try:
        async with asyncio.timeout(opened.model.upstream.idle_timeout_s):
            return await read_up_to(opened.rest, limit, opened.first_chunk)
    except (httpx.HTTPError, TimeoutError):
        raise UpstreamError("The upstream answer was cut short or stalled.") from None
    finally:
        await opened.response.aclose()


def _read_json_answer(gateway: Gateway, ctx: RequestContext, body: bytes) -> bytes:
    """Pick usage (and image count) out of a JSON answer; add the indicator when configured."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(document, dict):
        return body
    usage = document.get("usage")
    ctx.usage = usage if isinstance(usage, dict) else None
    if ctx.usage is None:
        ctx.completion_chars = _answer_chars(document)
    if ctx.endpoint.name == "images.generations" and isinstance(document.get("data"), list):
        ctx.images = len(document["data"])
    if gateway.config.settings.model_source_indicator:
        document["model_source_indicator"] = ctx.indicator_object()
        return orjson.dumps(document)
    return body


def _answer_chars(document: dict[str, Any]) -> int:
    total = 0
    for choice in document.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("message")
            text = message.get("content") if isinstance(message, dict) else choice.get("text")
            total += len(text) if isinstance(text, str) else 0
    return total


def _stream(
    gateway: Gateway,
    ctx: RequestContext,
    opened: Opened,
    headers: dict[str, str],
    wants_usage: bool,
) -> Response:
    assert opened.rest is not None

    def on_end(result: StreamResult) -> None:
        ctx.stream = result
        ctx.usage = result.usage
        ctx.upstream_ended = result.last_chunk_at
        if result.error is not None:
            ctx.fail(result.error)
        elif result.client_gone:
            ctx.status = 499  # nginx's "client closed request": the client left mid-stream
        _end_deferred(gateway, ctx)

    relay = SSERelay(
        opened.first_chunk,
        opened.rest,
        opened.response,
        client_wants_usage=wants_usage,
        on_end=on_end,
        max_event_bytes=gateway.config.settings.max_sse_event_bytes,
    )
    gateway.metrics.open_streams.inc()
    return RelayResponse(relay, headers={**headers, **SSE_HEADERS}, media_type="text/event-stream")


def _relay_binary(
    gateway: Gateway, ctx: RequestContext, opened: Opened, headers: dict[str, str]
) -> Response:
    assert opened.rest is not None
    rest = opened.rest

    async def chunks() -> AsyncIterator[bytes]:
        try:
            if opened.first_chunk:
                yield opened.first_chunk
            async for chunk in rest:
                yield chunk
        except httpx.HTTPError:
            ctx.status = 502  # cut mid-body: abort so the client sees an incomplete transfer
            raise
        except (asyncio.CancelledError, GeneratorExit):
            ctx.status = 499  # the client went away
            raise
        finally:
            ctx.upstream_ended = time.perf_counter()
            await opened.response.aclose()
            _end_deferred(gateway, ctx)

    gateway.metrics.open_streams.inc()
    return RelayResponse(chunks(), status_code=opened.response.status_code, headers=headers)


def _end_deferred(gateway: Gateway, ctx: RequestContext) -> None:
    gateway.metrics.open_streams.dec()
    gateway.metrics.inflight.dec()
    gateway.finisher.finish(ctx)
