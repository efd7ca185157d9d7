"""Which endpoint a POST below /v1 is: a known one, a declared passthrough, or none."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import MethodNotAllowed, NotFound
from gateway.http.paths import PREFIX, canonical_path, match_pattern
from gateway.proxy.bridge import Bridge
from gateway.proxy.routing import KNOWN_ENDPOINTS, Endpoint, passthrough_endpoint


class Dispatch:
    """Maps a POST path to its endpoint. Every spelling of a known endpoint (``/v1/./chat/
    completions``, a trailing slash, ``%2e``) gets that endpoint's handling; other paths must
    be declared under ``passthrough:`` in routes.yaml, or they are refused."""

    def __init__(
        self,
        passthrough: Mapping[str, frozenset[str]],
        bridges: Mapping[str, Bridge] | None = None,
    ) -> None:
        """``bridges``: paths below /v1 served by a protocol bridge (``/responses``...)."""
        self._known = {endpoint.path: endpoint for endpoint in KNOWN_ENDPOINTS}
        self.direct = {PREFIX + endpoint.path: endpoint for endpoint in KNOWN_ENDPOINTS}
        self._passthrough = passthrough
        self._bridges = dict(bridges or {})

    def endpoint(self, path: str) -> Endpoint | Bridge:
        """The endpoint (or bridge) for a path that is not one of ``direct``'s spellings."""
        below = canonical_path(path)
        bridge = self._bridges.get(below)
        if bridge is not None:
            return bridge
        known = self._known.get(below)
        if known is not None:
            return known
        routes = match_pattern(self._passthrough, below)
        if routes is None:
            raise NotFound(f"Unknown endpoint: POST {PREFIX}{below}", code="unknown_url")
        return passthrough_endpoint(below, routes)


async def wrong_method(request: Request) -> Response:
    raise MethodNotAllowed(f"Method {request.method} is not allowed on {request.url.path}.")


def routes() -> list[Route]:
    """POSTs never reach the router (the fast lane in ``gateway.http.asgi`` takes them); other
    methods on the known endpoints get 405."""
    return [
        Route(PREFIX + endpoint.path, wrong_method, methods=["GET", "PUT", "PATCH", "DELETE"])
        for endpoint in KNOWN_ENDPOINTS
    ]
