"""Handlers for the proxied /v1 endpoints: each one is the shared pipeline with its Endpoint."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import NotFound
from gateway.proxy import Gateway, proxy
from gateway.routing import KNOWN_ENDPOINTS, Endpoint, passthrough_endpoint

Handler = Callable[[Request], Awaitable[Response]]


def _handler(endpoint: Endpoint) -> Handler:
    async def handle(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        return await proxy(gateway, request, endpoint)

    return handle


async def passthrough(request: Request) -> Response:
    """Any other POST /v1/* whose JSON body names a routable model."""
    path = "/" + request.path_params["path"]
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise NotFound(f"Unknown endpoint: POST /v1{path}", code="unknown_url")
    gateway: Gateway = request.app.state.gateway
    return await proxy(gateway, request, passthrough_endpoint(path))


def routes() -> list[Route]:
    known = [
        Route("/v1" + endpoint.path, _handler(endpoint), methods=["POST"])
        for endpoint in KNOWN_ENDPOINTS
    ]
    return [*known, Route("/v1/{path:path}", passthrough, methods=["POST"])]
