"""Run-time rollout weights of a tier's routes (admin): control-plane kind ``weights``.

``GET /v1/admin/tiers/{tier}/weights`` shows each weighted route's effective weights (run
time, else tiers.yaml); ``PUT`` with ``{"routes": {"text": {"model-a": 90, "canary": 10}}}``
replaces the tier's run-time weights (every named model must be in that route's chain as
tiers.yaml lists it, in demo mode too); ``DELETE`` returns to tiers.yaml. Writes are audited
by the control plane and reach every replica through its snapshot.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.config.model import Tier
from gateway.errors import InvalidRequest, NotFound
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import services
from gateway.proxy.rollout import WEIGHTS_KIND, run_time_weights

MAX_WEIGHT = 1_000_000.0


async def weights(request: Request) -> Response:
    gateway = services(request)
    actor = require_role(request, "viewer" if request.method == "GET" else "admin")
    tier = _tier(request)
    if request.method != "GET":
        document = None
        if request.method == "PUT":
            document = {"routes": _routes(tier, await request.body())}
        await gateway.control.put(
            WEIGHTS_KIND, tier.name, document, actor=actor.name, action=f"weights.{request.method}"
        )
    return json_response(_view(tier, gateway.control.snapshot.kind(WEIGHTS_KIND).get(tier.name)))


def _tier(request: Request) -> Tier:
    name = request.path_params["tier"]
    tier = services(request).config.tiers.get(name)
    if tier is None:
        raise NotFound(f"Unknown tier '{name}'.")
    return tier.as_listed or tier  # `--demo`: the listed models, not the demo one standing in


def _routes(tier: Tier, raw: bytes) -> dict[str, dict[str, float]]:
    try:
        body = orjson.loads(raw or b"{}")
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be JSON.") from None
    routes = body.get("routes") if isinstance(body, dict) else None
    if not isinstance(routes, dict) or not routes:
        raise InvalidRequest('Expected {"routes": {"<route>": {"<model>": <weight>}}}.')
    checked: dict[str, dict[str, float]] = {}
    for route, by_model in routes.items():
        chain = tier.routes.get(route)
        if chain is None:
            raise InvalidRequest(f"Tier '{tier.name}' has no route '{route}'.", param="routes")
        if not isinstance(by_model, dict) or not by_model:
            raise InvalidRequest(f"routes.{route}: expected model → weight.", param="routes")
        names = {model.name for model in chain}
        for model, weight in by_model.items():
            if model not in names:
                raise InvalidRequest(f"routes.{route}: '{model}' is not in its chain.")
            if not _valid_weight(weight):
                raise InvalidRequest(f"routes.{route}.{model}: a number from 0 to {MAX_WEIGHT:g}.")
        if not any(by_model.values()):
            raise InvalidRequest(f"routes.{route}: at least one weight must be above 0.")
        checked[route] = {model: float(weight) for model, weight in by_model.items()}
    return checked


def _valid_weight(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_WEIGHT
    )


def _view(tier: Tier, document: dict[str, Any] | None) -> dict[str, Any]:
    shown: dict[str, dict[str, float]] = {}
    for route, chain in tier.routes.items():
        found = run_time_weights(document, route, chain) or tier.weights.get(route)
        if found:
            shown[route] = {model.name: weight for model, weight in zip(chain, found, strict=True)}
    return {"tier": tier.name, "source": "run-time" if document else "config", "routes": shown}
