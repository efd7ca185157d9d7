"""The app factory: the gateway's parts (``gateway.parts``) behind its routes, with a lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from gateway.config.model import Config
from gateway.config.runtime import Runtime
from gateway.control.reload import Reloader
from gateway.control.tier_quotas import TierQuotaFollower
from gateway.http import dispatch
from gateway.http.admin import routes as admin
from gateway.http.api import account, batches, files, models, ops, protocols, videos
from gateway.http.api.protocols import protocol_bridges
from gateway.http.asgi import GatewayApp
from gateway.http.body_limit import BodyLimit
from gateway.http.dispatch import Dispatch
from gateway.http.errors import EXCEPTION_HANDLERS
from gateway.observe.metrics import Metrics, mark_worker_dead
from gateway.parts import Gateway, build_gateway
from gateway.providers.transport import Transport
from gateway.proxy.videos.jobs import ADOPT_AFTER_S, POLL_INTERVAL_S
from gateway.store.port import Store
from gateway.ui import pages
from gateway.ui.session import SessionLoader, Sessions

log = logging.getLogger("gateway")
STORE_CLOSE_TIMEOUT_S = 5.0
PART_CLOSE_TIMEOUT_S = 5.0  # each background part at shutdown (video jobs, control plane, ...)


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
        Dispatch(
            config.passthrough,
            protocol_bridges(gateway.store, config, gateway.metrics.count_stored_response),
        ),
        routes=routes(),
        lifespan=_lifespan(gateway, owns_transport=transport is None),
        middleware=[Middleware(BodyLimit, max_bytes=config.settings.max_body_bytes), *middleware],
        routed_middleware=[Middleware(SessionLoader, sessions=Sessions(gateway.store))],
        exception_handlers=dict(EXCEPTION_HANDLERS),
    )
    app.state.gateway = gateway
    _follow_control(app, gateway, config_source)
    return app


def routes() -> list[BaseRoute]:
    """Every route but the proxied POSTs (the fast lane in ``gateway.http.asgi`` takes those),
    in matching order."""
    return [
        *ops.routes(),
        *models.routes(),
        *account.routes(),
        *admin.routes(),  # the admin API's table, and the client-key routes it documents
        *pages.routes(),
        *files.routes(),
        *batches.routes(),
        *protocols.routes(),
        *videos.routes(),  # before dispatch's 405 for GET /v1/videos
        *dispatch.routes(),
    ]


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
    bridges = protocol_bridges(new.store, config, new.metrics.count_stored_response)
    app.swap_lane(new.pipeline, Dispatch(config.passthrough, bridges))


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
            gateway.pipeline.drain_listeners()  # the billing of the last requests, and theirs
            app.state.gateway.pipeline.drain_listeners()  # since a reload
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
