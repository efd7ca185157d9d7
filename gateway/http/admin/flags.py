"""``/v1/admin/flags``: list feature flags, read one, set it at run time, or drop back to YAML."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.control.flags import KIND, flag_document, flag_state, flag_states
from gateway.errors import InvalidRequest
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import services


async def list_flags(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    states = flag_states(gateway.control.snapshot, gateway.config)
    return json_response({"object": "list", "data": states})


async def show(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    return json_response(flag_state(gateway.control.snapshot, gateway.config, _name(request)))


async def set_flag(request: Request) -> Response:
    """PUT ``{enabled, rollout_percent?}``: the run-time value (replaces the YAML default)."""
    actor = require_role(request, "admin")
    gateway, name = services(request), _name(request)
    flag_state(gateway.control.snapshot, gateway.config, name)  # 404 for an undeclared flag
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be a JSON object.") from None
    document = flag_document(body, gateway.clock())
    snapshot = await gateway.control.put(KIND, name, document, actor=actor.name, action="flag.set")
    return json_response(flag_state(snapshot, gateway.config, name))


async def reset(request: Request) -> Response:
    """DELETE: back to the default declared in tiers.yaml."""
    actor = require_role(request, "admin")
    gateway, name = services(request), _name(request)
    flag_state(gateway.control.snapshot, gateway.config, name)
    snapshot = await gateway.control.put(KIND, name, None, actor=actor.name, action="flag.reset")
    return json_response(flag_state(snapshot, gateway.config, name))


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    return name
