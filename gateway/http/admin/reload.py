"""``POST /v1/admin/reload``: read routes.yaml and tiers.yaml again, on every worker and replica."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.control.reload import Reloader
from gateway.errors import GatewayError
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response


class InvalidConfig(GatewayError):
    status, type, code, label = 400, "invalid_request_error", "invalid_config", "invalid_request"


class NotReloadable(GatewayError):
    status, type, code, label = 409, "invalid_request_error", "not_reloadable", "conflict"


async def reload(request: Request) -> Response:
    """200 with the new config's summary; 400 listing the problems (the config in force
    stays); the other processes follow through the control plane."""
    actor = require_role(request, "admin")
    reloader: Reloader | None = getattr(request.app.state, "reloader", None)
    if reloader is None:
        raise NotReloadable("This process was not started from a config directory.")
    result = await reloader.reload(actor=actor.name, announce=True)
    if not result.ok:
        error = InvalidConfig(
            "The new config is invalid; the one in force stays: " + "; ".join(result.problems)
        )
        body = error.body()
        body["error"]["problems"] = list(result.problems)  # type: ignore[index]
        return json_response(body, error.status)
    return json_response(
        {"reloaded": True, "generation": result.generation, "summary": result.summary}
    )
