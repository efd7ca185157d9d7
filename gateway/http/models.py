"""GET /v1/models and /v1/models/{id}: what the caller's tier may use, in OpenAI shape.

A run-time key with a ``models`` allow-list sees only the entries its list names (the others
are answered like an unknown model); a key without one sees everything its tier may use.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.errors import Forbidden, ModelNotFound
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.proxy.auth import Principal


def _entries(gateway: Services, principal: Principal) -> dict[str, dict[str, Any]]:
    tier = principal.tier
    entries = {
        route: _entry(route, "gateway", gateway.created, route=route) for route in tier.routes
    }
    for chain in tier.routes.values():
        for model in chain:
            entries.setdefault(
                model.name,
                _entry(
                    model.name,
                    model.upstream.name,
                    gateway.created,
                    upstream_model=model.upstream_model,
                    modality=model.modality,
                ),
            )
    return entries


def _visible(entries: dict[str, dict[str, Any]], principal: Principal) -> dict[str, dict[str, Any]]:
    """The entries the caller's key may use (all of them without an allow-list)."""
    if principal.models is None:
        return entries
    return {id: entry for id, entry in entries.items() if id in principal.models}


def _entry(model_id: str, owner: str, created: int, **extra: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": owner, **extra}


async def list_models(request: Request) -> Response:
    gateway = services(request)
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    entries = _visible(_entries(gateway, principal), principal)
    return json_response({"object": "list", "data": list(entries.values())})


async def get_model(request: Request) -> Response:
    gateway = services(request)
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    model_id = request.path_params["model_id"]
    if principal.models is not None and model_id not in principal.models:
        raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")
    entries = _entries(gateway, principal)
    if model_id in entries:
        return json_response(entries[model_id])
    chain = principal.tier.lookup.get(model_id)
    if chain:  # an upstream id: report the gateway's model it belongs to
        return json_response({**entries[chain[0].name], "id": model_id})
    config = gateway.config
    if model_id in config.known_models or model_id in config.known_routes:
        raise Forbidden(
            f"The model '{model_id}' is not available in the '{principal.tier.name}' tier.",
            param="model",
        )
    raise ModelNotFound(f"The model '{model_id}' does not exist.", param="model")


def routes() -> list[Route]:
    return [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
    ]
