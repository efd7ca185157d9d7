"""OpenTelemetry traces (the ``otel`` extra), imported only when tracing is configured.

A server span per request, a client span per upstream attempt (retries and fallbacks are
siblings under it), with the GenAI semantic conventions' attributes and the gateway's own.
Spans leave through a bounded ``BatchSpanProcessor`` on its own thread; those it drops are
counted (``span_export``). Sampling, exporter endpoint and resource come from the standard
``OTEL_*`` variables, read by the SDK. Message contents are never recorded.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Mapping,
    Sequence,
)
from typing import Any

import httpx

from gateway.config.model import Model
from gateway.errors import QuotaExceeded
from gateway.extras import OTEL, MissingExtra
from gateway.observe.span_export import DropCountingProcessor, OnDrop
from gateway.proxy.attempt_outcome import Failure, Opened
from gateway.proxy.context import RequestContext

try:  # imported only with tracing configured
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span as ApiSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as error:
    raise MissingExtra(OTEL) from error


DEFAULT_SERVICE_NAME = "llm-gateway"
DEFAULT_QUEUE_SIZE = 2048  # the SDK's own default for OTEL_BSP_MAX_QUEUE_SIZE
# Endpoint → gen_ai.operation.name (the conventions' names where they have one).
OPERATIONS = {
    "chat.completions": "chat",
    "responses": "chat",  # OpenAI's Responses API, bridged to chat (gateway/protocols)
    "messages": "chat",  # Anthropic's Messages API, likewise
    "completions": "text_completion",
    "embeddings": "embeddings",
}
FINISH_REASON = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z_]{1,40})"')


class OtelTracer:
    """The pipeline's ``Tracer``: one provider per app (nothing process-global is set)."""

    def __init__(self, provider: TracerProvider, user_hash: Callable[[str], str]) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("gateway")
        self._propagator = TraceContextTextMapPropagator()
        self._user_hash = user_hash
        self._epoch_offset_ns = time.time_ns() - time.perf_counter_ns()

    def begin(self, headers: Mapping[str, str], ctx: RequestContext) -> RequestSpans | Unsampled:
        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        operation = OPERATIONS.get(ctx.endpoint.name, ctx.endpoint.name)
        span = self._tracer.start_span(
            operation,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "gen_ai.operation.name": operation,
                "http.request.method": "POST",
                "gateway.endpoint": ctx.endpoint.name,
                "gateway.request_id": ctx.request_id,
            },
            start_time=self.epoch_ns(ctx.started),
        )
        if not span.is_recording():  # its attempts would not be sampled either: no spans
            return Unsampled(span.get_span_context())
        return RequestSpans(self, span, operation)

    def attempt_span(self, parent: ApiSpan, name: str, attributes: dict[str, Any]) -> ApiSpan:
        return self._tracer.start_span(
            name, context=set_span_in_context(parent), kind=SpanKind.CLIENT, attributes=attributes
        )

    def epoch_ns(self, perf_counter: float) -> int:
        return int(perf_counter * 1e9) + self._epoch_offset_ns

    def user_hash(self, user: str) -> str:
        return self._user_hash(user)

    def shutdown(self) -> None:
        self._provider.shutdown()


class RequestSpans:
    """One request's spans: the server span, and the attempt whose answer is being relayed."""

    def __init__(self, tracer: OtelTracer, span: ApiSpan, operation: str) -> None:
        self._tracer = tracer
        self._span = span
        self._operation = operation
        context = span.get_span_context()
        self.trace_id = f"{context.trace_id:032x}"
        self._open: list[AttemptSpan] = []
        self._finish_reasons: list[str] = []

    def attempt(self, model: Model, request: httpx.Request) -> AttemptSpan:
        url = request.url
        span = self._tracer.attempt_span(
            self._span,
            f"{self._operation} {model.upstream_model}",
            {
                "gen_ai.operation.name": self._operation,
                "gen_ai.provider.name": model.upstream.name,
                "gen_ai.system": model.upstream.name,
                "gen_ai.request.model": model.upstream_model,
                "gateway.model": model.name,
                "http.request.method": request.method,
                "server.address": url.host,
                "server.port": url.port or (443 if url.scheme == "https" else 80),
            },
        )
        context = span.get_span_context()
        request.headers["traceparent"] = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        )
        if context.trace_state:
            request.headers["tracestate"] = context.trace_state.to_header()
        attempt = AttemptSpan(span, model)
        self._open.append(attempt)
        return attempt

    def answer(self, document: Mapping[str, Any]) -> None:
        for choice in document.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                self._finish_reasons.append(reason)
        if isinstance(model := document.get("model"), str):
            for attempt in self._open:
                attempt.response_model = model

    async def relay(self, body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        chunks = aiter(body)
        try:
            async for chunk in chunks:
                if b'"finish_reason"' in chunk:
                    self._finish_reasons.extend(
                        found.decode() for found in FINISH_REASON.findall(chunk)
                    )
                yield chunk
        finally:
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()

    def finish(self, ctx: RequestContext) -> None:
        span, ended = self._span, self._tracer.epoch_ns(ctx.ended or time.perf_counter())
        usage = _usage_attributes(ctx)
        for attempt in self._open:  # the answered one, or any cut short by a cancellation
            attempt.finish(usage, self._finish_reasons, ctx, self._tracer, ended)
        if not span.is_recording():
            span.end(end_time=ended)
            return
        attributes = _request_attributes(ctx, self._tracer)
        attributes.update(usage)
        if self._finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(self._finish_reasons)
        span.set_attributes(attributes)
        route = ctx.plan.route if ctx.plan is not None else None
        if route is not None:
            span.update_name(f"{self._operation} {route}")
        if ctx.stream is not None and ctx.stream.first_chunk_at:
            span.add_event(
                "gen_ai.first_token",
                {"gen_ai.server.time_to_first_token": ctx.stream.first_chunk_at - ctx.started},
                timestamp=self._tracer.epoch_ns(ctx.stream.first_chunk_at),
            )
        if ctx.status >= 500:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=ended)


class Unsampled:
    """A request whose trace is not sampled: nothing is recorded, but the upstream still hears
    of the trace (``traceparent`` with the sampled flag off, naming the server span)."""

    __slots__ = ("_traceparent", "_tracestate", "trace_id")

    def __init__(self, context: SpanContext) -> None:
        self.trace_id = f"{context.trace_id:032x}"
        self._traceparent = f"00-{self.trace_id}-{context.span_id:016x}-{context.trace_flags:02x}"
        self._tracestate = context.trace_state.to_header() if context.trace_state else None

    def attempt(self, model: Model, request: httpx.Request) -> Unsampled:
        request.headers["traceparent"] = self._traceparent
        if self._tracestate:
            request.headers["tracestate"] = self._tracestate
        return self

    def ended(self, outcome: Opened | Failure) -> None:
        pass

    def answer(self, document: Mapping[str, Any]) -> None:
        pass

    def relay(self, body: AsyncIterable[bytes]) -> AsyncIterable[bytes]:
        return body

    def finish(self, ctx: RequestContext) -> None:
        pass


class AttemptSpan:
    """One upstream attempt's client span: ends with the attempt when it failed, with the
    request when its answer is relayed."""

    __slots__ = ("_span", "model", "opened", "response_model")

    def __init__(self, span: ApiSpan, model: Model) -> None:
        self._span = span
        self.model = model
        self.opened = False
        self.response_model: str | None = None

    def ended(self, outcome: Opened | Failure) -> None:
        span = self._span
        if isinstance(outcome, Opened):
            self.opened = True
            span.set_attribute("http.response.status_code", outcome.response.status_code)
            return
        if outcome.status is not None:
            span.set_attribute("http.response.status_code", outcome.status)
        span.set_attribute("error.type", outcome.error_type)
        span.set_attribute("gateway.verdict", outcome.verdict.value)
        span.set_status(Status(StatusCode.ERROR, outcome.error_type))
        span.end()

    def finish(
        self,
        usage: dict[str, int],
        finish_reasons: Sequence[str],
        ctx: RequestContext,
        tracer: OtelTracer,
        request_ended: int,
    ) -> None:
        span = self._span
        if not span.is_recording():  # ended already (failed) or not sampled
            return
        if not self.opened:  # the request was cancelled while this attempt waited
            span.set_attribute("error.type", "cancelled")
            span.set_status(Status(StatusCode.ERROR, "cancelled"))
            span.end(end_time=request_ended)
            return
        attributes: dict[str, Any] = dict(usage)
        attributes["gen_ai.response.model"] = self.response_model or self.model.upstream_model
        if finish_reasons:
            attributes["gen_ai.response.finish_reasons"] = tuple(finish_reasons)
        if ctx.stream is not None and ctx.stream.error is not None:
            attributes["error.type"] = ctx.stream.error.label
            span.set_status(Status(StatusCode.ERROR, ctx.stream.error.label))
        span.set_attributes(attributes)
        ended = tracer.epoch_ns(ctx.upstream_ended) if ctx.upstream_ended else request_ended
        span.end(end_time=ended)


def _usage_attributes(ctx: RequestContext) -> dict[str, int]:
    attributes = {}
    prompt = (ctx.usage or {}).get("prompt_tokens")
    if isinstance(prompt, int):
        attributes["gen_ai.usage.input_tokens"] = prompt
    completion = ctx.completion_tokens()
    if completion is not None:
        attributes["gen_ai.usage.output_tokens"] = completion
    return attributes


def _request_attributes(ctx: RequestContext, tracer: OtelTracer) -> dict[str, Any]:
    """The server span's attributes, read from the finished request (never its contents)."""
    attributes: dict[str, Any] = {
        "http.response.status_code": ctx.status,
        "gateway.fallback": ctx.fallback,
        "gateway.attempts": ctx.attempts,
        "gateway.cache_hit": ctx.cache == "hit",
        "gateway.overhead_ms": round(ctx.overhead_s * 1000, 3),
    }
    if ctx.requested_model is not None:
        attributes["gen_ai.request.model"] = ctx.requested_model
    if ctx.model is not None:
        attributes["gen_ai.provider.name"] = ctx.model.upstream.name
        attributes["gen_ai.system"] = ctx.model.upstream.name
        attributes["gen_ai.response.model"] = ctx.model.upstream_model
        attributes["gateway.model"] = ctx.model.name
    if ctx.principal is not None:
        attributes["gateway.tier"] = ctx.principal.tier.name
        attributes["gateway.user.hash"] = tracer.user_hash(ctx.principal.user)
    if ctx.plan is not None:
        attributes["gateway.route"] = ctx.plan.route
    if ctx.cache is not None:
        attributes["gateway.cache"] = ctx.cache
    if (decision := _quota_decision(ctx)) is not None:
        attributes["gateway.quota.decision"] = decision
    if ctx.error is not None:
        attributes["error.type"] = ctx.error.label
    return attributes


def _quota_decision(ctx: RequestContext) -> str | None:
    if isinstance(ctx.error, QuotaExceeded):
        return "rejected"
    if ctx.admission is None:
        return None
    return "downgraded" if ctx.downgraded else "admitted"


def start(user_hash: Callable[[str], str], on_drop: OnDrop) -> OtelTracer:
    """A tracer exporting OTLP/HTTP as the ``OTEL_*`` variables say."""
    attributes = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_*
    capacity = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE") or DEFAULT_QUEUE_SIZE)
    provider.add_span_processor(DropCountingProcessor(OTLPSpanExporter(), capacity, on_drop))
    return OtelTracer(provider, user_hash)
