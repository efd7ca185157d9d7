"""Run-time per-user overrides kept in the store (admin token): they hold across replicas."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.config.model import CAPABILITIES, Budget, Quota
from gateway.errors import InvalidRequest
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import Services, services

QUOTA_FIELDS = {f.name: f.type for f in dataclasses.fields(Quota)}
# The largest value each field takes (null inherits): whole numbers for counts, and numbers
# whose stored integer units (audio ms, micro-USD) stay far below what the store holds.
LIMITS: dict[str, tuple[type, float]] = {
    "requests_per_day": (int, 10**12),
    "tokens_per_day": (int, 10**12),
    "tokens_per_request": (int, 10**12),
    "minutes_per_day": (float, 10**7),
    "usd_per_day": (float, 10**6),
    "usd_per_month": (float, 10**6),
}


async def show(request: Request) -> Response:
    gateway = _admin(request, "viewer")
    user = request.path_params["user"]
    override = await gateway.meter.users.override(user)
    return json_response({"user": user, **_plain(override)})


async def set_quota(request: Request) -> Response:
    gateway = _admin(request)
    user, capability = request.path_params["user"], request.path_params["capability"]
    if capability not in CAPABILITIES:
        raise InvalidRequest(f"Unknown capability '{capability}'.", param="capability")
    quota = None
    if request.method == "PUT":
        quota = Quota(**_numbers(await request.body(), set(QUOTA_FIELDS)))
    before = _plain(await gateway.meter.users.override(user))["quotas"].get(capability)
    await gateway.meter.users.set_override(user, capability, quota)
    after = dataclasses.asdict(quota) if quota else None
    await _audit(request, f"{user}/{capability}", "user_quota", before, after)
    return await show(request)


async def set_budget(request: Request) -> Response:
    gateway = _admin(request)
    budget = None
    if request.method == "PUT":
        budget = Budget(**_numbers(await request.body(), {"usd_per_day", "usd_per_month"}))
    user = request.path_params["user"]
    before = _plain(await gateway.meter.users.override(user))["budget"]
    await gateway.meter.users.set_budget(user, budget)
    after = dataclasses.asdict(budget) if budget else None
    await _audit(request, user, "user_budget", before, after)
    return await show(request)


async def _audit(request: Request, id: str, kind: str, before: Any, after: Any) -> None:
    actor = require_role(request, "admin")
    action = f"{kind}.{'delete' if after is None else 'set'}"
    await services(request).control.note(
        kind, id, actor=actor.name, action=action, before=before, after=after
    )


def _admin(request: Request, role: str = "admin") -> Services:
    require_role(request, role)
    return services(request)


def _numbers(raw: bytes, allowed: set[str]) -> dict[str, Any]:
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("The body must be a JSON object.") from None
    if not isinstance(document, dict) or not set(document) <= allowed:
        raise InvalidRequest(
            f"Expected a JSON object with keys from: {', '.join(sorted(allowed))}."
        )
    for key, value in document.items():
        if value is not None:
            _check(key, value)
    return document


def _check(key: str, value: object) -> None:
    """A count is a whole number, minutes and USD any number; both from 0 to the field's cap."""
    kind, most = LIMITS[key]
    allowed = int if kind is int else int | float
    if isinstance(value, bool) or not isinstance(value, allowed) or not 0 <= value <= most:
        what = "a whole number" if kind is int else "a number"
        raise InvalidRequest(
            f"'{key}' must be {what} from 0 to {most:.0e}, or null to inherit.", param=key
        )


def _plain(override: Any) -> dict[str, Any]:
    return {
        "quotas": {cap: dataclasses.asdict(q) for cap, q in override.quotas.items()},
        "budget": dataclasses.asdict(override.budget) if override.budget else None,
    }
