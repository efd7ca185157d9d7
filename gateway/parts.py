"""Every part of a gateway built from config, transport, store and clock: the ``Gateway``."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.batches.bridge import OwnerKeys, PipelineLines
from gateway.batches.service import Batches
from gateway.batches.settings import BatchSettings
from gateway.config.demo import uses_demo
from gateway.config.model import Config, Settings
from gateway.config.runtime import Runtime
from gateway.control.id_keys import IdKeys
from gateway.control.plane import ControlPlane
from gateway.control.secrets_at_rest import SecretBox
from gateway.control.stored_keys import StoredKeys
from gateway.ledger.settings import LedgerSettings
from gateway.metering import Meter
from gateway.observe.access_log import AccessLog
from gateway.observe.batch_metrics import BatchMetrics
from gateway.observe.metrics import Metrics, UsageMetrics
from gateway.observe.provider_stats import ProviderStats
from gateway.observe.request_metrics import RequestMetrics
from gateway.observe.tracing import TraceEnd, start_tracing
from gateway.protocols.response_store import ResponseStore
from gateway.providers.demo import DemoRouter
from gateway.providers.transport import Transport, create_transport
from gateway.proxy.attempts import Attempter
from gateway.proxy.auth import KeyRing
from gateway.proxy.billing import Billing
from gateway.proxy.breaker import Breakers
from gateway.proxy.bridge import ResponsesBridge
from gateway.proxy.cache.exact import ResponseCache
from gateway.proxy.credentials import Credentials
from gateway.proxy.flag_gate import FlagGate
from gateway.proxy.listeners import Listeners
from gateway.proxy.pipeline import Pipeline
from gateway.proxy.rollout import Rollout
from gateway.proxy.shared_health import SharedHealth
from gateway.proxy.trace_hooks import Tracer
from gateway.proxy.videos.jobs import VideoJobs
from gateway.store.factory import create_store
from gateway.store.jobs import job_store_for
from gateway.store.memory import MemoryStore
from gateway.store.port import Store
from gateway.store.redis.store import RedisStore
from gateway.usage.alerts import CostAlerts
from gateway.usage.analytics import Analytics, RedisAnalytics
from gateway.usage.postgres_analytics import PostgresAnalytics
from gateway.usage.records import UsageRecords

if TYPE_CHECKING:  # the ledger's modules need asyncpg (the postgres extra): imported if configured
    from gateway.ledger.service import Ledger

log = logging.getLogger("gateway")


@dataclass(frozen=True, kw_only=True)
class Gateway:
    """Every part, built once per app (``app.state.gateway``; see ``gateway.http.services``)."""

    config: Config
    runtime: Runtime
    keyring: KeyRing
    transport: Transport
    store: Store
    meter: Meter
    metrics: Metrics
    breakers: Breakers
    stats: ProviderStats
    pipeline: Pipeline
    clock: Callable[[], float]
    created: int  # reported as models' `created`
    videos: VideoJobs  # video jobs: records, polling, settling at the end
    control: ControlPlane  # run-time documents (keys, flags, quotas...) mirrored in memory
    shared_health: SharedHealth | None = None  # breaker openings shared with other replicas
    ledger: Ledger | None = None  # the usage ledger in PostgreSQL, when DATABASE_URL is set
    stored_keys: StoredKeys | None = None  # sealed upstream keys: system pool and users' keys
    batches: Batches | None = None  # /v1/files and /v1/batches, and this replica's batch runner
    tracer: Tracer | None = None  # OpenTelemetry, when configured (OTEL_EXPORTER_OTLP_*)

    @functools.cached_property
    def analytics(self) -> Analytics:
        """Usage totals from the rollups and filtered records (the dashboard's reads): from
        the ledger when DATABASE_URL is set (any range), else from Redis (recent records)."""
        if self.ledger is not None:
            return PostgresAnalytics(self.ledger.database)
        return RedisAnalytics(self.store, self.clock, background=self.runtime.roll_usage)

    @functools.cached_property
    def usage_records(self) -> UsageRecords:
        """Usage records of a range (``/v1/usage``): the ledger's when DATABASE_URL is set."""
        ledger = self.ledger.records if self.ledger is not None else None
        return UsageRecords(self.store, self.clock, ledger)


@dataclass(frozen=True, kw_only=True)
class Kept:
    """The parts a reload keeps from the gateway in force (none on the first build)."""

    meter: Meter | None = None
    shared_health: SharedHealth | None = None
    breakers: Breakers | None = None
    stats: ProviderStats | None = None
    stored_keys: StoredKeys | None = None
    control: ControlPlane | None = None
    videos: VideoJobs | None = None
    ledger: Ledger | None = None
    batches: Batches | None = None
    tracer: Tracer | None = None

    @classmethod
    def of(cls, gateway: Gateway | None) -> Kept:
        if gateway is None:
            return cls()
        return cls(
            **{field.name: getattr(gateway, field.name) for field in dataclasses.fields(cls)}
        )


def build_gateway(
    config: Config,
    runtime: Runtime,
    transport: Transport | None,
    store: Store | None,
    clock: Callable[[], float],
    metrics: Metrics | None,
    reuse: Gateway | None = None,
) -> Gateway:
    """Every part for ``config``. On a reload, each part that holds state is taken from
    ``reuse`` (the parts in force) through ``Kept``: a new stateful part must be too."""
    kept = Kept.of(reuse)
    upstream = transport or create_transport(
        runtime.transport,
        runtime.max_upstream_connections,
        max_header_bytes=config.settings.max_upstream_header_bytes,
        max_headers=config.settings.max_upstream_headers,
    )
    if uses_demo(config) and not reuse:  # `serve --demo`: the demo host is answered in-process
        upstream = DemoRouter(upstream)
    metrics = metrics or Metrics()
    ledger_settings = LedgerSettings.from_env(file=config.ledger)
    store = store or create_store(runtime.redis_url, _store_settings(config, ledger_settings))
    meter = kept.meter or Meter(
        config,
        store,
        clock=clock,
        spend=CostAlerts(config.alerts, store, clock),
        on_record=UsageMetrics(metrics).observe,
        on_store_error=metrics.store_errors.inc,
        lease_ttl_s=config.settings.reservation_lease_s,
    )
    shared = kept.shared_health or (None if isinstance(store, MemoryStore) else SharedHealth(store))
    breakers = kept.breakers or Breakers(
        config.breaker,
        time.monotonic,
        on_open=shared.publish if shared else None,
        shared_open=shared.is_open if shared else None,
    )
    stats = kept.stats or ProviderStats()
    box = SecretBox.from_env()
    ids = IdKeys(box.id_key if box else None)  # keyed config-key ids and log user hashes
    ids.warn_if_unkeyed()
    stored_keys = StoredKeys.create(box)  # sealed system and user keys
    stored_keys = kept.stored_keys or stored_keys
    credentials = Credentials(stored_keys.pool, stored_keys.users)
    attempter = Attempter(
        upstream,
        config.retry,
        breakers,
        max_body_bytes=config.settings.max_upstream_body_bytes,
        keys=credentials,
    )
    tracer = kept.tracer if reuse is not None else _tracer(runtime, ids, metrics)
    listeners = Listeners(
        [
            RequestMetrics(metrics, breakers, stats),
            Billing(meter),
            AccessLog(log_bodies=runtime.log_bodies, ids=ids),
            *([TraceEnd()] if tracer is not None else []),
        ]
    )
    control = kept.control or ControlPlane(store, clock=clock)
    if kept.control is None:  # a reload keeps the subscription
        stored_keys.follow(control)
    keyring = KeyRing(config, control, clock, reuse.keyring.throttle if reuse else None, ids)
    videos = kept.videos or VideoJobs(
        config, upstream, meter, job_store_for(store), clock=clock, keys=credentials
    )
    pipeline = Pipeline(
        config,
        keyring,
        attempter,
        meter,
        listeners,
        log_bodies=runtime.log_bodies,
        videos=videos,
        rollout=Rollout(lambda: control.snapshot),
        cache=ResponseCache(config, store, clock),
        credentials=credentials,
        flags=FlagGate(config, control),
        tracer=tracer,
    )
    owners = OwnerKeys(keyring)
    batch_pipeline = Pipeline(  # batch lines: the same parts, run as the batch's owner
        config,
        owners,
        attempter,
        meter,
        listeners,
        log_bodies=runtime.log_bodies,
        rollout=Rollout(lambda: control.snapshot),
        credentials=credentials,
        flags=FlagGate(config, control),
    )
    batches = kept.batches or Batches(BatchSettings.from_env(), store, clock=clock)
    stored = ResponseStore(store, config.settings.responses_ttl_s, metrics.count_stored_response)
    responses = ResponsesBridge(stored)
    batches.runner.execute = PipelineLines(lambda: batch_pipeline, owners, responses)
    batches.runner.tier_of = owners.tier_of
    batches.observe(BatchMetrics(metrics))
    return Gateway(
        config=config,
        runtime=runtime,
        keyring=keyring,
        transport=upstream,
        store=store,
        meter=meter,
        metrics=metrics,
        breakers=breakers,
        stats=stats,
        pipeline=pipeline,
        clock=clock,
        created=int(clock()),
        videos=videos,
        control=control,
        shared_health=shared,
        ledger=kept.ledger or _ledger(ledger_settings, store, metrics),
        stored_keys=stored_keys,
        batches=batches,
        tracer=tracer,
    )


def _store_settings(config: Config, ledger: LedgerSettings) -> Settings:
    """The store's settings: with the ledger on, its shipper trims the usage stream, and
    settle's cap is only a safety net above the shipper's."""
    if not ledger.enabled:
        return config.settings
    capped = max(ledger.stream_cap, config.settings.usage_stream_maxlen)
    return dataclasses.replace(config.settings, usage_stream_maxlen=capped)


def _tracer(runtime: Runtime, ids: IdKeys, metrics: Metrics) -> Tracer | None:
    """The tracer when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set: one per app (the SDK's
    process-wide provider is left alone), the user named as in the access log, its dropped
    spans counted."""
    if not runtime.tracing:
        return None

    def dropped(reason: str, spans: int) -> None:
        metrics.child(metrics.trace_spans_dropped, reason).inc(spans)

    return start_tracing(ids.log_user, dropped)


def _ledger(settings: LedgerSettings, store: Store, metrics: Metrics) -> Ledger | None:
    """The ledger when DATABASE_URL is set; usage reads then go to it."""
    if not settings.enabled:
        return None
    from gateway.ledger.service import Ledger

    redis = store if isinstance(store, RedisStore) else None
    return Ledger(settings, redis, metrics.registry)
