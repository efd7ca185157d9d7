"""Quota-increase requests: users file and list theirs; admins list, approve or deny them."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.control.quota_requests import (
    APPROVED,
    DENIED,
    KIND,
    check_room,
    decided,
    granted_quota,
    listed,
    new_request,
    pending,
    requested_fields,
)
from gateway.control.user_writes import admit_user_write
from gateway.errors import InvalidRequest
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import services


async def create(request: Request) -> Response:
    """POST /v1/quota/requests ``{capability, requested, reason?}`` with the user's client key."""
    actor = require_role(request, "user")  # a client key, or a dashboard user's session
    gateway = services(request)
    user, key_id = actor.user or "", actor.name.removeprefix("key:")
    check_room(gateway.control.snapshot, user)
    document = new_request(await _body(request), user, key_id, gateway.clock())
    await admit_user_write(gateway.store, user, gateway.clock())
    await gateway.control.put(
        KIND,
        document["id"],
        document,
        actor=actor.name,
        action="quota_request.create",
        log="user",
    )
    return json_response(document, 201)


async def mine(request: Request) -> Response:
    """GET /v1/quota/requests: the caller's own requests."""
    actor = require_role(request, "user")
    data = listed(services(request).control.snapshot, user=actor.user)
    return json_response({"object": "list", "data": data})


async def list_all(request: Request) -> Response:
    """GET /v1/admin/quota-requests[?status=&user=]."""
    require_role(request, "viewer")
    status, user = request.query_params.get("status"), request.query_params.get("user")
    data = listed(services(request).control.snapshot, user=user, status=status)
    return json_response({"object": "list", "data": data})


async def approve(request: Request) -> Response:
    """POST .../approve ``{granted?, note?}``: the user's override for the capability is set
    to ``granted`` (default: what was requested)."""
    actor = require_role(request, "admin")
    gateway = services(request)
    found = pending(gateway.control.snapshot, request.path_params["id"])
    body = await _body(request, {"granted", "note"})
    granted = requested_fields(body.get("granted", found["requested"]), "granted")
    document = decided(found, APPROVED, actor.name, gateway.clock(), granted, body.get("note"))
    quota = granted_quota(granted)
    await gateway.meter.users.set_override(found["user"], found["capability"], quota)
    await gateway.control.put(
        KIND, found["id"], document, actor=actor.name, action="quota_request.approve"
    )
    return json_response(document)


async def deny(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    found = pending(gateway.control.snapshot, request.path_params["id"])
    body = await _body(request, {"note"})
    document = decided(found, DENIED, actor.name, gateway.clock(), None, body.get("note"))
    await gateway.control.put(
        KIND, found["id"], document, actor=actor.name, action="quota_request.deny"
    )
    return json_response(document)


async def _body(request: Request, allowed: set[str] | None = None) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be a JSON object.") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object.")
    if allowed is not None and not set(body) <= allowed:
        raise InvalidRequest(
            f"Expected a JSON object with keys from: {', '.join(sorted(allowed))}."
        )
    return body
