"""Admin tokens (``/v1/admin/tokens``: the secret shown once) and the audit log."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import InvalidRequest, NotFound
from gateway.http.admin.auth import KIND, ROLES, require_role
from gateway.http.admin.input import json_object, query_int, text
from gateway.http.responses import json_response
from gateway.http.services import services
from gateway.secret import sha256_hex
from gateway.store.port import AUDIT_LOGS, AuditLog

TOKEN_PREFIX = "gwadm-"


def public(token_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a token: never its digest."""
    shown = {k: v for k, v in document.items() if k != "sha256"}
    return {"id": token_id, "object": "admin_token", **shown}


async def create_token(request: Request) -> Response:
    actor = require_role(request, "admin")
    body = json_object(await request.body(), {"role", "name"}, required={"role"})
    role = body["role"]
    if role not in ROLES:
        raise InvalidRequest(f"'role' must be one of: {', '.join(ROLES)}.", param="role")
    gateway = services(request)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = "at_" + secrets.token_hex(6)
    document = {
        "sha256": sha256_hex(secret),
        "role": role,
        "name": text(body, "name"),
        "created_at": int(gateway.clock()),
        "created_by": actor.name,
    }
    await gateway.control.put(
        KIND,
        token_id,
        document,
        actor=actor.name,
        action="admin_token.create",
        audit={"after": public(token_id, document)},
    )
    return json_response({**public(token_id, document), "token": secret}, status=201)


async def list_tokens(request: Request) -> Response:
    require_role(request, "viewer")
    tokens = services(request).control.snapshot.kind(KIND)
    data = [public(token_id, document) for token_id, document in sorted(tokens.items())]
    return json_response({"object": "list", "data": data})


async def delete_token(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    token_id = request.path_params["id"]
    document = gateway.control.snapshot.kind(KIND).get(token_id)
    if document is None:
        raise NotFound(f"No admin token '{token_id}'.", param="id")
    await gateway.control.put(
        KIND,
        token_id,
        None,
        actor=actor.name,
        action="admin_token.delete",
        audit={"before": public(token_id, document)},
    )
    return json_response({"id": token_id, "object": "admin_token", "deleted": True})


async def audit(request: Request) -> Response:
    require_role(request, "viewer")
    params = request.query_params
    limit = query_int(params.get("limit"), "limit", 100)
    before = params.get("before")
    if before is not None and not before.replace("-", "").isdecimal():
        raise InvalidRequest("'before' must be an entry_id from a previous page.", param="before")
    log = params.get("log")
    if log is not None and log not in AUDIT_LOGS:
        raise InvalidRequest("'log' must be 'operator' or 'user'.", param="log")
    chosen: AuditLog | None = "user" if log == "user" else "operator" if log else None
    entries = await services(request).control.audit_log(limit, before, chosen)
    after = entries[-1]["entry_id"] if len(entries) == limit else None
    return json_response({"object": "list", "data": entries, "next_before": after})
