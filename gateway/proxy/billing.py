"""The listener that settles each finished request with the meter (or records its refusal)."""

from __future__ import annotations

from gateway.errors import QuotaExceeded
from gateway.metering import Meter, Outcome
from gateway.proxy.context import RequestContext
from gateway.proxy.listeners import ignored


class Billing:
    def __init__(self, meter: Meter) -> None:
        self._meter = meter

    started = relaying = ignored

    def finished(self, ctx: RequestContext) -> None:
        if ctx.admission is not None:
            self._meter.finish(ctx.admission, outcome_of(ctx))
        elif isinstance(ctx.error, QuotaExceeded) and ctx.meter_request is not None:
            self._meter.reject(ctx.meter_request, outcome_of(ctx))


def outcome_of(ctx: RequestContext) -> Outcome:
    """What the meter settles: the answer's status, model and usage as reported or counted."""
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
        downgraded=ctx.downgraded,
        deployment=model.deployment if model else None,
        cache=ctx.cache,
        tags=ctx.tags,
        rollout=ctx.rollout,
        batch=ctx.principal.batch if ctx.principal is not None else None,
    )
