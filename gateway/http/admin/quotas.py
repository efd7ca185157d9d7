"""``/v1/admin/tiers/{tier}/quotas/{capability}``: a tier's quota read, set or reset at run time."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.control.tier_quotas import (
    KIND,
    check_target,
    document_id,
    quota_fields,
    quota_state,
)
from gateway.errors import InvalidRequest
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import services


async def show(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    tier, capability = _target(request)
    return json_response(quota_state(gateway.config, gateway.control.snapshot, tier, capability))


async def set_quota(request: Request) -> Response:
    """PUT the quota fields (left out, null or -1: unlimited); DELETE: back to tiers.yaml."""
    actor = require_role(request, "admin")
    gateway = services(request)
    tier, capability = _target(request)
    document = None
    if request.method == "PUT":
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise InvalidRequest("The body must be a JSON object of quota fields.") from None
        fields = quota_fields(body)
        document = {
            "tier": tier,
            "capability": capability,
            "quota": fields,
            "updated_at": gateway.clock(),
        }
    action = "tier_quota.set" if document is not None else "tier_quota.reset"
    snapshot = await gateway.control.put(
        KIND, document_id(tier, capability), document, actor=actor.name, action=action
    )
    return json_response(quota_state(gateway.config, snapshot, tier, capability))


def _target(request: Request) -> tuple[str, str]:
    tier, capability = request.path_params["tier"], request.path_params["capability"]
    check_target(services(request).config, tier, capability)
    return tier, capability
