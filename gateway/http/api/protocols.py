"""The protocol bridges' endpoints: stored responses, count_tokens, and the bridges' paths.

``GET``/``DELETE /v1/responses/{id}``, ``GET /v1/responses/{id}/input_items``, ``POST
/v1/messages/count_tokens``; the fast lane hands ``POST /v1/responses`` and ``POST
/v1/messages`` to the bridges ``protocol_bridges`` names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.model import Config
from gateway.errors import GatewayError, InvalidRequest, NotFound, StoreUnavailable
from gateway.http.responses import json_response
from gateway.http.services import services
from gateway.metering.estimate import estimate_prompt_tokens, estimate_text_tokens
from gateway.protocols import messages
from gateway.protocols.response_store import ResponseStore, StoredResponse
from gateway.proxy.bridge import Bridge, MessagesBridge, ResponsesBridge
from gateway.proxy.incoming import parse_json_body
from gateway.store.port import Store, StoreError

MAX_PAGE = 100


def protocol_bridges(
    store: Store, config: Config, observe: Callable[[str], None]
) -> dict[str, Bridge]:
    """Paths below /v1 → their bridge (for ``Dispatch``); ``observe`` counts stored responses."""
    responses = ResponseStore(store, config.settings.responses_ttl_s, observe)
    return {"/responses": ResponsesBridge(responses), "/messages": MessagesBridge()}


async def _stored(request: Request) -> tuple[ResponseStore, str, StoredResponse | None]:
    svc = services(request)
    principal = svc.keyring.authenticate(request.headers)
    store = ResponseStore(svc.store, svc.config.settings.responses_ttl_s)
    response_id = request.path_params["response_id"]
    try:
        return store, principal.user, await store.get(principal.user, response_id)
    except StoreError:
        raise StoreUnavailable("The response store is unavailable.") from None


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"No response found with id '{response_id}'.", param="response_id")


async def get_response(request: Request) -> Response:
    if request.query_params.get("stream") in ("true", "1"):
        raise InvalidRequest("Streaming a stored response is not supported.", param="stream")
    _, _, stored = await _stored(request)
    if stored is None:
        raise _not_found(request.path_params["response_id"])
    return json_response(stored.response)


async def delete_response(request: Request) -> Response:
    store, owner, stored = await _stored(request)
    response_id = request.path_params["response_id"]
    if stored is None:
        raise _not_found(response_id)
    try:
        await store.delete(owner, response_id)
    except StoreError:
        raise StoreUnavailable("The response store is unavailable.") from None
    return json_response({"id": response_id, "object": "response", "deleted": True})


async def input_items(request: Request) -> Response:
    _, _, stored = await _stored(request)
    if stored is None:
        raise _not_found(request.path_params["response_id"])
    query = request.query_params
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be asc or desc.", param="order")
    limit_text = query.get("limit", "20")
    if not limit_text.isdecimal() or not 1 <= int(limit_text) <= MAX_PAGE:
        raise InvalidRequest(f"'limit' must be an integer from 1 to {MAX_PAGE}.", param="limit")
    items = list(stored.input_items)
    if order == "desc":
        items.reverse()
    if after := query.get("after"):
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}'.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[: int(limit_text)]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > len(page),
        }
    )


ESTIMATE_HEADER = "x-gateway-token-count"
ESTIMATE_METHOD = "estimate; characters/4"


async def count_tokens(request: Request) -> Response:
    """An estimate of the prompt's tokens (characters / 4, images and messages at a flat
    rate): the gateway cannot ask every upstream's tokenizer."""
    try:
        principal_check = services(request).keyring.authenticate
        principal_check(request.headers)
        body: dict[str, Any] = parse_json_body(await request.body())
        body.setdefault("max_tokens", 1)
        call = messages.translate_request(body)
    except GatewayError as error:
        shaped = messages.error_body(error.status, {"message": error.message})
        return Response(
            orjson.dumps(shaped), status_code=error.status, media_type="application/json"
        )
    tokens = estimate_prompt_tokens(call.chat)
    if tools := call.chat.get("tools"):
        tokens += estimate_text_tokens(orjson.dumps(tools).decode())
    # said in-band too: a client may not have read the docs
    return json_response({"input_tokens": tokens}, headers={ESTIMATE_HEADER: ESTIMATE_METHOD})


def routes() -> list[Route]:
    return [
        Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", input_items, methods=["GET"]),
        Route("/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    ]
