"""The listener that counts each request into the Prometheus metrics, gauges included."""

from __future__ import annotations

from typing import Any

from gateway.errors import QuotaExceeded
from gateway.observe.metric_values import Unlocked
from gateway.observe.metrics import Metrics
from gateway.observe.provider_stats import ProviderStats
from gateway.proxy.breaker import Breakers
from gateway.proxy.context import RequestContext


class RequestMetrics:
    """Owns the ``inflight`` and ``open_streams`` gauges: up when a request starts or its relay
    is handed out, down when it finishes."""

    def __init__(self, metrics: Metrics, breakers: Breakers, stats: ProviderStats) -> None:
        self._metrics = metrics
        self._breakers = breakers
        self._stats = stats
        # the values themselves (``Metrics.value``): counted on every request
        self._inflight = metrics.value(metrics.inflight)
        self._open_streams = metrics.value(metrics.open_streams)
        # per (endpoint, model, tier, provider, status) and per (provider, model) of an
        # attempt: the values each request adds to, found in one lookup (the label sets are
        # the metrics' own, so these stay as bounded as they are)
        self._outcomes: dict[tuple[str, str, str, str, int], list[Any]] = {}
        self._attempts: dict[tuple[str, str], tuple[Any, Any]] = {}
        # per model of a stream: its time to first token's values and its time per output
        # token's (None until observed: a label set shows up as before)
        self._streams: dict[str, list[Any]] = {}

    # A one-process value (``Unlocked``) is added to in place: no call of ``inc`` or ``set``
    # for the four to six figures every request changes.

    def started(self, ctx: RequestContext) -> None:
        inflight = self._inflight
        if type(inflight) is Unlocked:
            inflight.value += 1
        else:
            inflight.inc(1)

    def relaying(self, ctx: RequestContext) -> None:
        streams = self._open_streams
        if type(streams) is Unlocked:
            streams.value += 1
        else:
            streams.inc(1)

    deferrable = True  # the counts heard after the connection's next request is read

    def at_end(self, ctx: RequestContext) -> None:
        """The gauges, at once (``Listeners``): a request that ended is not in flight."""
        inflight = self._inflight
        if type(inflight) is Unlocked:
            inflight.value -= 1
        else:
            inflight.inc(-1)
        if ctx.relayed:
            streams = self._open_streams
            if type(streams) is Unlocked:
                streams.value -= 1
            else:
                streams.inc(-1)

    def finished(self, ctx: RequestContext) -> None:
        m = self._metrics
        endpoint = ctx.endpoint.name
        model = ctx.model
        model_name = model.name if model else "none"
        provider = model.upstream.name if model else "none"
        tier = ctx.principal.tier.name if ctx.principal else "none"
        key = (endpoint, model_name, tier, provider, ctx.status)
        values = self._outcomes.get(key)
        if values is None:
            values = self._outcomes[key] = [
                m.value(m.requests, endpoint, model_name, tier, provider, str(ctx.status)),
                m.value(m.request_duration, endpoint),
                None,  # the overhead's, once observed (a label set shows up as before)
            ]
        count = values[0]
        if type(count) is Unlocked:
            count.value += 1
        else:
            count.inc(1)
        values[1].observe(ctx.ended - ctx.started)
        if ctx.overhead_s > 0.0:  # 0: no answer went out (the client left before it)
            overhead = values[2]
            if overhead is None:
                overhead = values[2] = m.value(m.overhead, endpoint)
            overhead.observe(ctx.overhead_s)  # as x-gateway-overhead-ms
        if isinstance(ctx.error, QuotaExceeded) and ctx.plan is not None:
            m.child(m.quota_rejections, ctx.plan.capability, ctx.error.code or "quota").inc()
        self._observe_attempts(ctx)
        if ctx.upstream_failure is not None and model is not None:  # after its first byte
            m.child(m.upstream_errors, provider, ctx.upstream_failure).inc()
            m.child(m.streams_cut, model.name, ctx.upstream_failure).inc()
            m.child(m.circuit_state, model.name).set(int(self._breakers.state(model.name)))
        if model is not None and ctx.stream is not None:
            self._observe_stream(ctx, model.name)

    def _observe_attempts(self, ctx: RequestContext) -> None:
        m = self._metrics
        previous = None
        for record in ctx.records:
            values = self._attempts.get((record.provider, record.model))
            if values is None:
                values = self._attempts[record.provider, record.model] = (
                    m.value(m.upstream_duration, record.provider),
                    m.value(m.circuit_state, record.model),
                )
            values[0].observe(record.seconds)
            self._stats.record(record.model, record.error_type is None, record.seconds)
            if record.error_type is not None:
                m.child(m.upstream_errors, record.provider, record.error_type).inc()
            state, circuit = float(self._breakers.state(record.model)), values[1]
            if type(circuit) is Unlocked:
                circuit.value = state
            else:
                circuit.set(state)
            if previous is not None and previous.model == record.model:
                m.child(m.retries, record.model, record.provider).inc()
            previous = record
        if ctx.model is not None and ctx.cache != "hit" and ctx.fallback and ctx.plan:
            first = ctx.plan.chain[0].name
            m.child(m.fallbacks, first, ctx.model.name, _fallback_reason(ctx, first)).inc()

    def _observe_stream(self, ctx: RequestContext, model: str) -> None:
        stream = ctx.stream
        assert stream is not None
        m = self._metrics
        values = self._streams.get(model)
        if values is None:
            values = self._streams[model] = [m.value(m.ttft, model), None]
        values[0].observe(stream.first_chunk_at - ctx.started)
        output = ctx.completion_tokens()
        if output and output > 1:
            per_token = (stream.last_chunk_at - stream.first_chunk_at) / (output - 1)
            tpot = values[1]
            if tpot is None:
                tpot = values[1] = m.value(m.tpot, model)
            tpot.observe(per_token)


def _fallback_reason(ctx: RequestContext, first: str) -> str:
    """Why the chain's first model did not serve: it failed, its circuit was open, or it could
    not be tried (no upstream credentials)."""
    if any(record.model == first for record in ctx.records):
        return "error"
    return "breaker_open" if first in ctx.breaker_skipped else "not_tried"
