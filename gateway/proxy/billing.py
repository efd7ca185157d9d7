"""The listener that settles each finished request with the meter (or records its refusal)."""

from __future__ import annotations

from gateway.errors import QuotaExceeded
from gateway.metering import Meter, Outcome
from gateway.proxy.context import RequestContext
from gateway.proxy.listeners import ignored


class Billing:
    deferrable = True  # heard after the connection's next request is read (``Listeners``)

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
    # one test of the model for its five fields, not one each
    if model is None:
        name = provider = upstream_model = price = deployment = None
    else:
        name, provider, upstream_model = model.name, model.upstream.name, model.upstream_model
        price, deployment = model.price, model.deployment
    # positional, in the fields' order: a call with some twenty keywords costs ten times one
    # without (CPython matches each keyword to a parameter), once per request
    return Outcome(
        ctx.status,  # status
        name,  # model
        provider,  # provider
        upstream_model,  # upstream_model
        price,  # price
        prompt if isinstance(prompt, int) else None,  # prompt_tokens
        completion if isinstance(completion, int) else None,  # completion_tokens
        ctx.completion_chars,  # completion_chars
        ctx.images,  # images
        ctx.audio_ms,  # audio_ms
        0,  # video_ms
        ctx.fallback,  # fallback
        len(ctx.records),  # attempts
        (ctx.ended - ctx.started) * 1000,  # latency_ms
        ctx.stream is not None,  # delivered
        estimated,  # estimated
        ctx.downgraded,  # downgraded
        deployment,  # deployment
        ctx.cache,  # cache
        ctx.tags,  # tags
        ctx.rollout,  # rollout
        ctx.principal.batch if ctx.principal is not None else None,  # batch
    )
