"""The end of every request: metrics, one log line, and the usage record — in one place."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from gateway.errors import QuotaExceeded
from gateway.metering import Meter, Outcome
from gateway.observe.metrics import Metrics
from gateway.observe.provider_stats import ProviderStats
from gateway.proxy.breaker import Breakers
from gateway.proxy.context import RequestContext

ACCESS_LOG = "gateway.access"


class Finisher:
    def __init__(
        self, metrics: Metrics, meter: Meter, breakers: Breakers, *, log_bodies: bool = False
    ) -> None:
        self._metrics = metrics
        self._breakers = breakers
        self._meter = meter
        self._log = logging.getLogger(ACCESS_LOG)
        self._log_bodies = log_bodies
        self.stats = ProviderStats()

    def finish(self, ctx: RequestContext) -> None:
        """Called exactly once per request, after its last byte (or its error) was sent."""
        ctx.ended = time.perf_counter()
        self._observe(ctx)
        if ctx.admission is not None:
            self._meter.finish(ctx.admission, outcome_of(ctx))
        elif isinstance(ctx.error, QuotaExceeded) and ctx.meter_request is not None:
            self._meter.reject(ctx.meter_request, outcome_of(ctx))
        if self._log.isEnabledFor(logging.INFO):
            fields = log_fields(ctx)
            if self._log_bodies and ctx.debug_body is not None:
                fields["body"] = ctx.debug_body
            self._log.info("request", extra={"fields": fields})

    def _observe(self, ctx: RequestContext) -> None:
        m = self._metrics
        endpoint = ctx.endpoint.name
        model = ctx.model
        model_name = model.name if model else "none"
        provider = model.upstream.name if model else "none"
        tier = ctx.principal.tier.name if ctx.principal else "none"
        m.child(m.requests, endpoint, model_name, tier, provider, str(ctx.status)).inc()
        total = ctx.ended - ctx.started
        upstream = max(0.0, ctx.upstream_ended - ctx.upstream_started)
        m.child(m.request_duration, endpoint).observe(total)
        m.child(m.overhead, endpoint).observe(max(0.0, total - upstream))
        if isinstance(ctx.error, QuotaExceeded) and ctx.plan is not None:
            m.child(m.quota_rejections, ctx.plan.capability, ctx.error.code or "quota").inc()
        self._observe_attempts(ctx)
        if model is not None and ctx.stream is not None:
            self._observe_stream(ctx, model.name)

    def _observe_attempts(self, ctx: RequestContext) -> None:
        m = self._metrics
        previous = None
        for record in ctx.records:
            m.child(m.upstream_duration, record.provider).observe(record.seconds)
            self.stats.record(record.model, record.error_type is None, record.seconds)
            if record.error_type is not None:
                m.child(m.upstream_errors, record.provider, record.error_type).inc()
            m.child(m.circuit_state, record.model).set(int(self._breakers.state(record.model)))
            if previous is not None:
                if previous.model == record.model:
                    m.child(m.retries, record.model, record.provider).inc()
                else:
                    m.child(m.fallbacks, previous.model, record.model).inc()
            previous = record

    def _observe_stream(self, ctx: RequestContext, model: str) -> None:
        stream = ctx.stream
        assert stream is not None
        self._metrics.child(self._metrics.ttft, model).observe(stream.first_chunk_at - ctx.started)
        output = completion_tokens(ctx)
        if output and output > 1:
            per_token = (stream.last_chunk_at - stream.first_chunk_at) / (output - 1)
            self._metrics.child(self._metrics.tpot, model).observe(per_token)


def completion_tokens(ctx: RequestContext) -> int | None:
    usage = ctx.usage or {}
    value = usage.get("completion_tokens")
    if isinstance(value, int):
        return value
    if ctx.stream is not None:
        return ctx.stream.events or None
    return None


def outcome_of(ctx: RequestContext) -> Outcome:
    usage = ctx.usage or {}
    model = ctx.model
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens"))
    estimated = False
    if not isinstance(completion, int) and ctx.stream is not None:
        completion, estimated = ctx.stream.events, True  # one token per streamed chunk
    return Outcome(
        status=ctx.status,
        model=model.name if model else None,
        provider=model.upstream.name if model else None,
        upstream_model=model.upstream_model if model else None,
        price=model.price if model else None,
        prompt_tokens=prompt if isinstance(prompt, int) else None,
        completion_tokens=completion if isinstance(completion, int) else None,
        completion_chars=ctx.completion_chars,
        images=ctx.images,
        audio_ms=ctx.audio_ms,
        fallback=ctx.fallback,
        attempts=ctx.attempts,
        latency_ms=(ctx.ended - ctx.started) * 1000,
        delivered=ctx.stream is not None,
        estimated=estimated,
    )


def log_fields(ctx: RequestContext) -> dict[str, Any]:
    principal = ctx.principal
    usage = ctx.usage or {}
    return {
        "event": "request",
        "request_id": ctx.request_id,
        "user": _hashed(principal.user) if principal else None,
        "tier": principal.tier.name if principal else None,
        "endpoint": ctx.endpoint.name,
        "model": ctx.model.name if ctx.model else None,
        "provider": ctx.model.upstream.name if ctx.model else None,
        "status": ctx.status,
        "error": ctx.error.label if ctx.error else None,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": completion_tokens(ctx),
        "latency_ms": round((ctx.ended - ctx.started) * 1000, 2),
        "fallback": ctx.fallback,
        "attempts": ctx.attempts,
        "replayed": sum(record.replayed for record in ctx.records),
        "byok": bool(principal and principal.byok),
    }


def _hashed(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()[:16]
