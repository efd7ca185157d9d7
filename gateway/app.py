"""The app factory: wires config, upstream transport, store and clock into a Starlette app."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.config.model import Config
from gateway.config.runtime import Runtime
from gateway.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    error_response,
)
from gateway.http import account, admin, models, ops
from gateway.http import dispatch as proxied
from gateway.http.dispatch import Dispatch
from gateway.metering import Meter, Store, create_store
from gateway.observe.finish import Finisher
from gateway.observe.metrics import Metrics, UsageMetrics, mark_worker_dead
from gateway.providers.openai import Transport, create_transport
from gateway.proxy.attempts import Attempter
from gateway.proxy.auth import KeyRing
from gateway.proxy.breaker import Breakers
from gateway.proxy.context import RequestIds
from gateway.proxy.incoming import body_cut_short
from gateway.proxy.pipeline import Gateway, proxy
from gateway.proxy.routing import Endpoint

log = logging.getLogger("gateway")


def create_app(
    config: Config,
    runtime: Runtime | None = None,
    *,
    transport: Transport | None = None,
    store: Store | None = None,
    clock: Callable[[], float] = time.time,
    metrics: Metrics | None = None,
) -> Starlette:
    runtime = runtime or Runtime()
    owns_transport = transport is None
    upstream = transport or create_transport(
        runtime.transport,
        runtime.max_upstream_connections,
        max_header_bytes=config.settings.max_upstream_header_bytes,
        max_headers=config.settings.max_upstream_headers,
    )
    store = store or create_store(runtime.redis_url, config.settings)
    metrics = metrics or Metrics()
    meter = Meter(
        config,
        store,
        clock=clock,
        on_record=UsageMetrics(metrics).observe,
        on_store_error=metrics.store_errors.inc,
        lease_ttl_s=config.settings.reservation_lease_s,
    )
    breakers = Breakers(config.breaker, time.monotonic)
    gateway = Gateway(
        config=config,
        keyring=KeyRing(config),
        transport=upstream,
        attempter=Attempter(
            upstream,
            config.retry,
            breakers,
            max_body_bytes=config.settings.max_upstream_body_bytes,
        ),
        meter=meter,
        metrics=metrics,
        finisher=Finisher(metrics, meter, breakers, log_bodies=runtime.log_bodies),
        breakers=breakers,
        runtime=runtime,
        clock=clock,
        created=int(clock()),
        request_ids=RequestIds(),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if runtime.redis_url is None:
            log.warning("REDIS_URL is not set: quotas and usage are held per process only")
        await meter.start()
        try:
            yield
        finally:
            await meter.aclose()
            await store.aclose()
            if owns_transport:
                await upstream.aclose()
            mark_worker_dead(os.getpid())

    return GatewayApp(
        gateway,
        routes=[
            *ops.routes(),
            *models.routes(),
            *account.routes(),
            *admin.routes(),
            *proxied.routes(),
        ],
        lifespan=lifespan,
        middleware=[Middleware(BodyLimit, max_bytes=config.settings.max_body_bytes)],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            ClientDisconnect: _body_cut_short,
            Exception: _unexpected_error,
        },
    )


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        method = request.method
        error: GatewayError = MethodNotAllowed(
            f"Method {method} is not allowed on {request.url.path}."
        )
        return error_response(error, exc.headers)
    if exc.status_code == 404:
        return error_response(NotFound(f"Unknown path: {request.url.path}", code="unknown_url"))
    return error_response(GatewayError(str(exc.detail), status=exc.status_code))


async def _body_cut_short(request: Request, exc: Exception) -> Response:
    """A body that stopped arriving (the client left, or the server's read guard cut it off
    and answered 408 itself): an answer nobody receives, and no traceback."""
    return error_response(body_cut_short(request))


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(GatewayError("The gateway hit an internal error.", code="internal_error"))


def limited(receive: Receive, max_bytes: int) -> Receive:
    """``receive`` that stops a body (chunked included) past ``max_bytes`` with a 413."""
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise PayloadTooLarge(f"Request body exceeds the {max_bytes} byte limit.")
        return message

    return limited_receive


class BodyLimit:
    """The body limit as middleware, for every route Starlette serves."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, limited(receive, self.max_bytes), send)


class GatewayApp(Starlette):
    """Starlette, with a direct path for the proxied endpoints.

    ``proxy()`` renders every error itself, so these requests need neither the router's scan
    nor the exception middlewares; skipping them is measurable at thousands of requests/s.
    Every POST below /v1 is dispatched here; the router never sees one.
    """

    def __init__(self, gateway: Gateway, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state.gateway = gateway
        self._dispatch = Dispatch(gateway.config.passthrough)
        self._max_bytes = gateway.config.settings.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            endpoint = self._dispatch.direct.get(path)
            if endpoint is not None or path.startswith("/v1/"):
                scope["app"] = self
                response = await self._proxied(scope, receive, path, endpoint)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _proxied(
        self, scope: Scope, receive: Receive, path: str, endpoint: Endpoint | None
    ) -> Response:
        if endpoint is None:
            try:
                endpoint = self._dispatch.endpoint(path)
            except GatewayError as error:
                return error_response(error)
        request = Request(scope, limited(receive, self._max_bytes))
        return await proxy(self.state.gateway, request, endpoint)
