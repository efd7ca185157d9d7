"""The catch-all for other /v1 POSTs; the known endpoints are dispatched by GatewayApp."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import NotFound
from gateway.proxy import Gateway, proxy
from gateway.routing import passthrough_endpoint


async def passthrough(request: Request) -> Response:
    """Any other POST /v1/* whose JSON body names a routable model."""
    path = "/" + request.path_params["path"]
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise NotFound(f"Unknown endpoint: POST /v1{path}", code="unknown_url")
    gateway: Gateway = request.app.state.gateway
    return await proxy(gateway, request, passthrough_endpoint(path))


def routes() -> list[Route]:
    """The known endpoints are dispatched directly by ``GatewayApp``; this catch-all serves
    every other POST below /v1 (and answers 405 to other methods there)."""
    return [Route("/v1/{path:path}", passthrough, methods=["POST"])]
