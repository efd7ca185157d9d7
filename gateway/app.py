"""The app factory: builds every part from config, transport, store and clock, and wires them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware

from gateway.batches.bridge import OwnerKeys, PipelineLines
from gateway.batches.service import Batches
from gateway.batches.settings import BatchSettings
from gateway.config.demo import uses_demo
from gateway.config.model import Config
from gateway.config.runtime import Runtime
from gateway.control.id_keys import IdKeys
from gateway.control.plane import ControlPlane
from gateway.control.reload import Reloader
from gateway.control.secrets_at_rest import SecretBox
from gateway.control.stored_keys import StoredKeys
from gateway.control.tier_quotas import TierQuotaFollower
from gateway.http import dispatch as proxied
from gateway.http.admin import analytics as usage_analytics
from gateway.http.admin import openapi as admin_openapi
from gateway.http.admin import overrides as admin
from gateway.http.admin import secrets as admin_secrets
from gateway.http.admin import upstreams as admin_upstreams
from gateway.http.admin import weights as admin_weights
from gateway.http.api import (
    account,
    batches,
    files,
    me_keys,
    models,
    ops,
    protocols,
    statements,
    videos,
)
from gateway.http.api.protocols import protocol_bridges
from gateway.http.asgi import GatewayApp
from gateway.http.body_limit import BodyLimit
from gateway.http.dispatch import Dispatch
from gateway.http.errors import EXCEPTION_HANDLERS
from gateway.ledger.settings import LedgerSettings
from gateway.metering import Meter
from gateway.observe.access_log import AccessLog
from gateway.observe.metrics import Metrics, UsageMetrics, mark_worker_dead
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
from gateway.proxy.videos.jobs import ADOPT_AFTER_S, POLL_INTERVAL_S, VideoJobs
from gateway.store.factory import create_store
from gateway.store.jobs import job_store_for
from gateway.store.memory import MemoryStore
from gateway.store.port import Store
from gateway.store.redis.store import RedisStore
from gateway.ui import pages as ui_pages
from gateway.ui.session import SessionLoader, Sessions
from gateway.usage.alerts import CostAlerts
from gateway.usage.analytics import Analytics, RedisAnalytics
from gateway.usage.postgres_analytics import PostgresAnalytics
from gateway.usage.records import UsageRecords

if TYPE_CHECKING:  # the ledger's modules need asyncpg (the postgres extra): imported if configured
    from gateway.ledger.service import Ledger

log = logging.getLogger("gateway")
STORE_CLOSE_TIMEOUT_S = 5.0
PART_CLOSE_TIMEOUT_S = 5.0  # each background part at shutdown (video jobs, control plane, ...)


@dataclass(frozen=True)
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


def create_app(
    config: Config,
    runtime: Runtime | None = None,
    *,
    transport: Transport | None = None,
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
    middleware: Sequence[Middleware] = (),
    video_poll_interval_s: float = POLL_INTERVAL_S,
    video_adopt_after_s: float = ADOPT_AFTER_S,
    config_source: Callable[[], Config] | None = None,
) -> Starlette:
    """``middleware`` runs on every request, the proxied ones included, inside the body limit."""
    runtime = runtime or Runtime()
    gateway = build_gateway(config, runtime, transport, store, clock, metrics)
    gateway.videos.poll_interval_s = video_poll_interval_s
    gateway.videos.adopt_after_s = video_adopt_after_s
    app = GatewayApp(
        gateway.pipeline,
        Dispatch(config.passthrough, protocol_bridges(gateway.store, config)),
        routes=[
            *ops.routes(),
            *models.routes(),
            *account.routes(),
            *admin.routes(),
            *admin_openapi.routes(),
            *admin_weights.routes(),
            *admin_upstreams.routes(),
            *admin_secrets.routes(),
            *me_keys.routes(),
            *statements.routes(),
            *usage_analytics.routes(),
            *ui_pages.routes(),
            *files.routes(),
            *batches.routes(),
            *protocols.routes(),
            *videos.routes(),  # before proxied's 405 for GET /v1/videos
            *proxied.routes(),
        ],
        lifespan=_lifespan(gateway, owns_transport=transport is None),
        middleware=[Middleware(BodyLimit, max_bytes=config.settings.max_body_bytes), *middleware],
        routed_middleware=[Middleware(SessionLoader, sessions=Sessions(gateway.store))],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.gateway = gateway
    _follow_control(app, gateway, config_source)
    return app


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
    ledger_settings, store_settings = LedgerSettings.from_env(file=config.ledger), config.settings
    if ledger_settings.enabled:  # the shipper trims the stream; settle's cap is a safety net
        capped = max(ledger_settings.stream_cap, config.settings.usage_stream_maxlen)
        store_settings = dataclasses.replace(config.settings, usage_stream_maxlen=capped)
    store = store or create_store(runtime.redis_url, store_settings)
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
        upstream, config.retry, breakers, max_body_bytes=config.settings.max_upstream_body_bytes,
        keys=credentials,
    )  # fmt: skip
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
    video_jobs = VideoJobs(
        config, upstream, meter, job_store_for(store), clock=clock, keys=credentials
    )
    video_jobs = kept.videos or video_jobs
    pipeline = Pipeline(
        config, keyring, attempter, meter, listeners, log_bodies=runtime.log_bodies,
        videos=video_jobs, rollout=Rollout(lambda: control.snapshot),
        cache=ResponseCache(config, store, clock),
        credentials=credentials, flags=FlagGate(config, control), tracer=tracer,
    )  # fmt: skip
    owners = OwnerKeys(keyring)
    batch_pipeline = Pipeline(  # batch lines: the same parts, run as the batch's owner
        config, owners, attempter, meter, listeners, log_bodies=runtime.log_bodies,
        rollout=Rollout(lambda: control.snapshot), credentials=credentials,
        flags=FlagGate(config, control),
    )  # fmt: skip
    batch_service = kept.batches or Batches(BatchSettings.from_env(), store, clock=clock)
    responses = ResponsesBridge(ResponseStore(store, config.settings.responses_ttl_s))
    batch_service.runner.execute = PipelineLines(lambda: batch_pipeline, owners, responses)
    batch_service.runner.tier_of = owners.tier_of
    return Gateway(
        config, runtime, keyring, upstream, store, meter, metrics, breakers, stats, pipeline, clock,
        int(clock()), video_jobs, control, shared_health=shared,
        ledger=kept.ledger or _ledger(ledger_settings, store, metrics),
        stored_keys=stored_keys, batches=batch_service, tracer=tracer,
    )  # fmt: skip


@dataclass(frozen=True)
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
        g = gateway
        return cls(
            g.meter, g.shared_health, g.breakers, g.stats, g.stored_keys, g.control, g.videos,
            g.ledger, g.batches, g.tracer,
        )  # fmt: skip


def _follow_control(app: GatewayApp, gateway: Gateway, source: Callable[[], Config] | None) -> None:
    """Run-time tier quotas into the meter; with ``source`` (reads the files), hot reload."""
    gateway.control.subscribe(TierQuotaFollower(gateway.meter.set_tier_quotas))
    app.state.reloader = None
    if source is not None:
        reloader = Reloader(gateway.control, source, lambda config: reload_app(app, config))
        gateway.control.subscribe(reloader.follow)
        app.state.reloader = reloader


def reload_app(app: GatewayApp, config: Config) -> None:
    """Put ``config`` in force: the parts built from it are new, those holding state (store,
    meter, breakers, control plane...) stay; requests already running keep their pipeline."""
    old: Gateway = app.state.gateway
    new = build_gateway(
        config, old.runtime, old.transport, old.store, old.clock, old.metrics, reuse=old
    )
    for name, value in vars(old).items():  # cached properties (analytics...) carry over
        if name not in new.__dict__:
            new.__dict__[name] = value
    old.meter.reconfigure(config)
    app.state.gateway = new
    app.swap_lane(new.pipeline, Dispatch(config.passthrough, protocol_bridges(new.store, config)))


def _tracer(runtime: Runtime, ids: IdKeys, metrics: Metrics) -> Tracer | None:
    """The tracer when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set: one per app (the SDK's
    process-wide provider is left alone), the user named as in the access log, its dropped
    spans counted."""
    if not runtime.tracing:
        return None
    return start_tracing(ids.log_user, lambda reason, spans: metrics.child(
        metrics.trace_spans_dropped, reason).inc(spans))  # fmt: skip


def _ledger(settings: LedgerSettings, store: Store, metrics: Metrics) -> Ledger | None:
    """The ledger when DATABASE_URL is set; usage reads then go to it."""
    if not settings.enabled:
        return None
    from gateway.ledger.service import Ledger

    redis = store if isinstance(store, RedisStore) else None
    return Ledger(settings, redis, metrics.registry)


async def _stop(part: str, closing: Awaitable[None]) -> None:
    """One background part's shutdown, bounded: a client stuck under a cancelled task (a
    pub/sub read, a stream read) must not hold the process past its grace period."""
    try:
        await asyncio.wait_for(closing, PART_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning(
            "shutdown: the %s did not stop within %s s; leaving it", part, PART_CLOSE_TIMEOUT_S
        )


def _lifespan(
    gateway: Gateway, *, owns_transport: bool
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if gateway.runtime.redis_url is None:
            log.warning("REDIS_URL is not set: quotas and usage are held per process only")
        await gateway.meter.start()
        await gateway.videos.start()
        await gateway.control.start()
        if app.state.reloader is not None:
            app.state.reloader.install_sighup()
        await gateway.analytics.start()  # folds new usage records into the rollups
        if gateway.ledger is not None:
            await gateway.ledger.start()
        if gateway.shared_health is not None:
            await gateway.shared_health.start()
        if gateway.batches is not None:
            await gateway.batches.start()
        try:
            yield
        finally:
            if gateway.batches is not None:
                await _stop("batch runner", gateway.batches.aclose())
            await _stop("video jobs", gateway.videos.aclose())
            await _stop("control plane", gateway.control.aclose())
            await _stop("rollups", gateway.analytics.aclose())
            if gateway.ledger is not None:
                await _stop("ledger", gateway.ledger.aclose())
            if gateway.shared_health is not None:
                await _stop("shared health", gateway.shared_health.aclose())
            await gateway.meter.aclose()  # unbounded: it hands the last usage records over
            try:  # a store client stuck in a broken state must not hold the shutdown
                await asyncio.wait_for(gateway.store.aclose(), STORE_CLOSE_TIMEOUT_S)
            except TimeoutError:
                log.warning("the store's connections did not close in time; leaving them")
            if owns_transport:
                await gateway.transport.aclose()
            if gateway.tracer is not None:  # the last spans are exported
                await _stop("tracer", asyncio.to_thread(gateway.tracer.shutdown))
            mark_worker_dead(os.getpid(), gateway.metrics.multiprocess_dir)

    return lifespan
