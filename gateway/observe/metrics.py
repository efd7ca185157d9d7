"""Every Prometheus metric, defined in one place. Label sets are small and bounded.

Histogram buckets follow the OpenTelemetry GenAI conventions where they define them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics import MetricWrapperBase

from gateway.metering.record import UsageRecord
from gateway.observe.metric_values import Unlocked, value_of

DURATION_BUCKETS = tuple(round(0.01 * 2**i, 2) for i in range(14))  # 0.01 s doubling to 81.92 s
TTFT_BUCKETS = (
    0.001,
    0.005,
    0.01,
    0.02,
    0.04,
    0.06,
    0.08,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
OVERHEAD_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The gateway's metrics on one registry (a fresh one per app, so tests stay isolated)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, multiprocess_dir: str | None = None
    ) -> None:
        """``multiprocess_dir``: where the workers' files are (several workers); by default the
        ``PROMETHEUS_MULTIPROC_DIR`` that prometheus-client itself read when imported, read
        here once (the one setting workers take from the environment: the library's rule)."""
        self.registry = registry or CollectorRegistry()
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._values: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.requests = Counter(
            "gateway_requests",
            "Client requests by outcome",
            ["endpoint", "model", "tier", "provider", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "gateway_request_duration_seconds",
            "Whole request time, to the last byte",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upstream_duration = Histogram(
            "gateway_upstream_duration_seconds",
            "Time spent waiting on upstreams",
            ["provider"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "gateway_overhead_seconds",
            "Request time not spent on the upstream",
            ["endpoint"],
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "gateway_time_to_first_token_seconds",
            "Streams: time to the first chunk",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tpot = Histogram(
            "gateway_time_per_output_token_seconds",
            "Streams: time per output token after the first",
            ["model"],
            buckets=TPOT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gateway_tokens", "Tokens metered", ["type", "model", "provider", "tier"], registry=r
        )
        self.cost = Counter(
            "gateway_cost_usd", "Cost in USD", ["model", "provider", "tier"], registry=r
        )
        self.retries = Counter(
            "gateway_retries",
            "Upstream retries of the same model",
            ["model", "provider"],
            registry=r,
        )
        self.fallbacks = Counter(
            "gateway_fallbacks",
            "Requests served by a model other than their chain's first, by why the first did not",
            ["from_model", "to_model", "reason"],
            registry=r,
        )
        self.usage_clamped = Counter(
            "gateway_usage_clamped",
            "Usage records whose upstream-reported usage was implausible and clamped",
            ["model", "provider"],
            registry=r,
        )
        self.rollout_selections = Counter(
            "gateway_rollout_selections",
            "Requests by the weighted chain entry (rollout) their user was given",
            ["tier", "model"],
            registry=r,
        )
        self.downgrades = Counter(
            "gateway_downgrades",
            "Requests served by a cheaper model or with fewer tokens, not refused",
            ["tier", "model"],
            registry=r,
        )
        self.deployment_requests = Counter(
            "gateway_deployment_requests",
            "Requests by the deployment of a model that answered",
            ["model", "deployment"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "gateway_circuit_state",
            "Breaker state: 0 closed, 1 half-open, 2 open",
            ["model"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.upstream_errors = Counter(
            "gateway_upstream_errors",
            "Failed upstream attempts",
            ["provider", "error_type"],
            registry=r,
        )
        self.quota_rejections = Counter(
            "gateway_quota_rejections",
            "Requests refused by quotas or budgets",
            ["capability", "reason"],
            registry=r,
        )
        self.inflight = Gauge(
            "gateway_inflight_requests",
            "Requests being served",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.open_streams = Gauge(
            "gateway_open_streams", "Streams being relayed", multiprocess_mode="livesum", registry=r
        )
        self.store_errors = Counter(
            "gateway_store_errors", "Store (Redis) operations that failed", registry=r
        )
        self.usage_buffered = Gauge(
            "gateway_usage_buffered",
            "Usage records waiting for the store",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.cache_requests = Counter(
            "gateway_cache_requests",
            "Requests the response cache applied to, by result: hit, miss, bypass, stale",
            ["tier", "result"],
            registry=r,
        )
        self.trace_spans_dropped = Counter(
            "gateway_trace_spans_dropped",
            "Spans not exported: queue_full (the export queue was full), export_failed",
            ["reason"],
            registry=r,
        )
        self.streams_cut = Counter(
            "gateway_streams_cut",
            "Answers whose upstream failed after the first byte: stream_cut, stream_idle_timeout",
            ["model", "reason"],
            registry=r,
        )
        self.batch_lines = Counter(
            "gateway_batch_lines",
            "Batch lines with a result: completed, failed, interrupted (replica died), expired",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.batches_ended = Counter(
            "gateway_batches_ended",
            "Batches made final, by status: completed, failed, expired, cancelled",
            ["endpoint", "status"],
            registry=r,
        )
        self.batch_lines_waiting = Gauge(
            "gateway_batch_lines_waiting",
            "Lines of running batches no replica has begun (as this replica last looked)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.batch_lines_in_flight = Gauge(
            "gateway_batch_lines_in_flight",
            "Batch lines this replica is answering",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.batches_paused = Gauge(
            "gateway_batches_paused",
            "Running batches paused by their owner's quota or an invalid key",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.stored_responses = Counter(
            "gateway_stored_responses",
            "Responses API store: stored, store_failed (answered, not kept), and the lookups of "
            "previous_response_id: found, missing, read_failed",
            ["event"],
            registry=r,
        )
        self.cost_alert_active = Gauge(
            "gateway_cost_alert_active",
            "1 while a cost alert threshold is crossed",
            ["scope"],
            multiprocess_mode="livemax",
            registry=r,
        )

    def count_stored_response(self, event: str) -> None:
        """One outcome of the Responses API's store (``protocols.response_store``)."""
        self.child(self.stored_responses, event).inc()

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label set (prometheus_client
        validates the values and takes a lock on every ``labels`` call)."""
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def value(self, metric: MetricWrapperBase, *values: str) -> Any:
        """What the per-request listeners add to (``inc(amount)``, ``set(value)``) or observe
        with (``observe(amount)``, a histogram) for ``metric``'s child of ``values``, looked up
        once per label set: the child's own value (or ``Buckets``), where prometheus_client's
        methods check the labels, the amount and the exemplar again on every call (most of
        their cost) for what the child's value then does. A child without the values this
        knows (another prometheus_client) is handed out itself: it has the same methods."""
        key = (id(metric), values)
        found = self._values.get(key)
        if found is None:
            child = self.child(metric, *values) if values else metric
            found = self._values[key] = value_of(child)
        return found


def render(metrics: Metrics) -> tuple[bytes, str]:
    """The scrape body: all workers' files in multiprocess mode, else this registry."""
    if metrics.multiprocess_dir:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, metrics.multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(metrics.registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int, multiprocess_dir: str | None = None) -> None:
    """Drop a gone worker's gauges from the scrape (every gauge here uses a ``live*`` mode);
    its counters stay. Called by the worker at shutdown and by the supervisor for a worker
    found dead (``gateway.serving``). Without a directory, the environment's is used."""
    directory = multiprocess_dir or os.environ.get(MULTIPROC_ENV)
    if directory:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class UsageMetrics:
    """Tokens and cost counted from each settled usage record (the metering's own numbers)."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # per (model, provider, tier): the input and output tokens' values and the cost's,
        # each looked up the first time it is added to (so a label set shows up as before)
        self._values: dict[tuple[str, str, str], list[Any]] = {}

    def observe(self, record: UsageRecord) -> None:
        labels = (record.model or "none", record.provider or "none", record.tier or "none")
        prompt, completion = record.prompt_tokens, record.completion_tokens
        m = self._metrics
        values = self._values.get(labels)
        if values is None:
            values = self._values[labels] = [None, None, None]
        # a value already looked up and a positive amount (the usual case) added at once, in
        # place when it is a one-process one (no call); else through ``_add`` (one call fewer
        # per figure, three per request)
        if prompt:
            if prompt > 0 and (value := values[0]) is not None:
                if type(value) is Unlocked:
                    value.value += prompt
                else:
                    value.inc(prompt)
            else:
                self._add(values, 0, prompt, m.tokens, "input", *labels)
        if completion:
            if completion > 0 and (value := values[1]) is not None:
                if type(value) is Unlocked:
                    value.value += completion
                else:
                    value.inc(completion)
            else:
                self._add(values, 1, completion, m.tokens, "output", *labels)
        if cost := record.cost_usd:
            if cost > 0 and (value := values[2]) is not None:
                if type(value) is Unlocked:
                    value.value += cost
                else:
                    value.inc(cost)
            else:
                self._add(values, 2, cost, m.cost, *labels)
        if record.usage_flagged:
            m.child(m.usage_clamped, labels[0], labels[1]).inc()
        if rollout := record.rollout:
            m.child(m.rollout_selections, labels[2], rollout).inc()
        if record.downgraded:
            m.child(m.downgrades, labels[2], labels[0]).inc()
        if deployment := record.deployment:
            m.child(m.deployment_requests, labels[0], deployment).inc()
        if cache := record.cache:  # a hit that stood in for a failed chain: "stale"
            result = "stale" if cache == "hit" and record.fallback else cache
            m.child(m.cache_requests, labels[2], result).inc()

    def _add(
        self, values: list[Any], slot: int, amount: float, counter: Counter, *labels: str
    ) -> None:
        """``inc(amount)`` on the counter's child: its value, kept in ``values[slot]``; a
        negative amount through the child, which refuses it."""
        if not amount >= 0:
            self._metrics.child(counter, *labels).inc(amount)
            return
        value = values[slot]
        if value is None:
            value = values[slot] = self._metrics.value(counter, *labels)
        value.inc(amount)
