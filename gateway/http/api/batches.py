"""/v1/batches: create, list, retrieve and cancel the caller's own batches."""

from __future__ import annotations

from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.batches.records import public_batch
from gateway.http.api.files import WithBatches, listing, paged
from gateway.http.responses import json_response
from gateway.http.services import services
from gateway.proxy.auth import presented_key
from gateway.proxy.incoming import body_cut_short, parse_json_body
from gateway.proxy.routing import CHAT, EMBEDDINGS, RESPONSES, resolve
from gateway.secret import sha256_hex

LIST_LIMIT_MAX = 100
ENDPOINTS = {"/v1/chat/completions": CHAT, "/v1/embeddings": EMBEDDINGS, "/v1/responses": RESPONSES}


async def create(request: Request) -> Response:
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    principal = gateway.keyring.authenticate(request.headers, request.scope)
    try:
        fields = parse_json_body(await request.body())
    except ClientDisconnect:
        raise body_cut_short(request) from None
    endpoint = ENDPOINTS.get(str(fields.get("endpoint")))
    config = gateway.config

    def check_model(model: str, body: dict[str, Any]) -> None:
        assert endpoint is not None  # the service checks the endpoint first
        principal.allow_model(model)
        resolve(config, principal.tier, endpoint, model, body)

    digest = sha256_hex(presented_key(request.headers) or "")
    record = await gateway.batches.create(principal.user, digest, fields, check_model)
    now = gateway.clock()
    return json_response(public_batch(record, await gateway.batches.state.progress(record.id), now))


async def retrieve(request: Request) -> Response:
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    owner = gateway.keyring.authenticate(request.headers, request.scope).user
    record, progress = await gateway.batches.get(owner, request.path_params["batch_id"])
    return json_response(public_batch(record, progress, gateway.clock()))


async def cancel(request: Request) -> Response:
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    owner = gateway.keyring.authenticate(request.headers, request.scope).user
    record, progress = await gateway.batches.cancel(owner, request.path_params["batch_id"])
    return json_response(public_batch(record, progress, gateway.clock()))


async def list_batches(request: Request) -> Response:
    gateway: WithBatches = services(request)  # type: ignore[assignment]
    owner = gateway.keyring.authenticate(request.headers, request.scope).user
    found = await gateway.batches.list(owner)
    page, has_more = paged(request, [record.id for record, _ in found], LIST_LIMIT_MAX, 20)
    now = gateway.clock()
    shown = [public_batch(record, progress, now) for record, progress in found[page]]
    return json_response(listing(shown, has_more))


def routes() -> list[Route]:
    return [
        Route("/v1/batches", create, methods=["POST"]),
        Route("/v1/batches", list_batches, methods=["GET"]),
        Route("/v1/batches/{batch_id}", retrieve, methods=["GET"]),
        Route("/v1/batches/{batch_id}/cancel", cancel, methods=["POST"]),
    ]
