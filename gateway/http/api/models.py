"""GET /v1/models and /v1/models/{id}: what the caller's tier may use, in OpenAI shape.

A run-time key with a ``models`` allow-list sees only the entries its list names (the others
are answered like an unknown model); a key without one sees everything its tier may use.
Each entry carries the plan's source fields (``provider_id``, ``display_name``,
``is_free_tier``, ``is_fallback``); ``?modality=`` keeps one modality; the list says the
caller's ``user_tier`` and whether the free tier is on for them (``free_tier_enabled``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.model import MODALITIES, Model
from gateway.control.flags import TOGETHER_FREE_TIER, flag_enabled
from gateway.errors import Forbidden, InvalidRequest, ModelNotFound
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.proxy.auth import Principal
from gateway.proxy.flag_gate import FREE_TIER
from gateway.proxy.source_indicators import provider_identity


def _entries(gateway: Services, principal: Principal) -> dict[str, dict[str, Any]]:
    tier = principal.tier
    entries = {
        route: {
            **_entry(route, "gateway", gateway.created, route=route, modality=route),
            **_source(tier.name, chain[0], is_fallback=False),
        }
        for route, chain in tier.routes.items()
        if chain
    }
    for chain in tier.routes.values():
        for position, model in enumerate(chain):
            entries.setdefault(
                model.name,
                {
                    **_entry(
                        model.name,
                        model.upstream.name,
                        gateway.created,
                        upstream_model=model.upstream_model,
                        modality=model.modality,
                    ),
                    **_source(tier.name, model, is_fallback=position > 0),
                },
            )
    return entries


def _source(tier: str, model: Model, *, is_fallback: bool) -> dict[str, Any]:
    """The plan's indicator fields of a model: ``is_fallback`` when it serves a route only
    after the models before it in the chain failed."""
    provider_id, display_name = provider_identity(model.upstream)
    return {
        "provider_id": provider_id,
        "display_name": display_name,
        "is_free_tier": tier == FREE_TIER,
        "is_fallback": is_fallback,
    }


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
    modality = request.query_params.get("modality")
    if modality is not None and modality not in MODALITIES:
        raise InvalidRequest(
            f"Unknown modality {modality!r} (known: {', '.join(MODALITIES)}).", param="modality"
        )
    data = [e for e in entries.values() if modality is None or e["modality"] == modality]
    snapshot = gateway.control.snapshot
    return json_response(
        {
            "object": "list",
            "data": data,
            "user_tier": principal.tier.name,
            "free_tier_enabled": flag_enabled(
                snapshot, gateway.config, TOGETHER_FREE_TIER, principal.user
            ),
        }
    )


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
