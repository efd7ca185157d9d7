"""One team's page, keys and usage (``/v1/admin/teams/{team}/...``): for its team tokens.

A team admin creates, rotates and revokes the team's keys, each for a member of the team, with
the team's tier, and within the team's limits: a key's models within the team's (and its
organization's) allow-list, its budget and rates no higher than the team's. A team viewer
reads. The usage shown is the team's own counters in their current windows (exact: the ones
the reservation checks), with what requests in flight hold included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.control import keys as runtime_keys
from gateway.control.orgs import ORGS, check_narrower, models_of, narrowed
from gateway.errors import InvalidRequest, NotFound, StoreUnavailable
from gateway.http.admin import keys as admin_keys
from gateway.http.admin.auth import Actor
from gateway.http.admin.input import json_object, text
from gateway.http.admin.orgs import shown_team, team
from gateway.http.admin.team_auth import require_team
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.metering import level_limits
from gateway.metering.pricing import micros_to_usd
from gateway.metering.windows import iso_utc
from gateway.metering.zoned_windows import zoned
from gateway.secret import sha256_hex
from gateway.store.port import StoreError

KEY_FIELDS = (
    "user",
    "name",
    "models",
    "expires_at",
    "budget_usd",
    "rpm",
    "tpm",
    "max_parallel",
    "metadata",
)
# a key's own limit → the team's limit it may not exceed: (measure, window)
CEILINGS = {"rpm": ("requests", "minute"), "tpm": ("tokens", "minute")}


async def show(request: Request) -> Response:
    team_id = request.path_params["team"]
    require_team(request, team_id, write=False)
    gateway = services(request)
    _, document = team(gateway, team_id)
    usage = await team_usage(gateway, team_id)
    return json_response({**shown_team(team_id, document), "usage": usage})


async def usage(request: Request) -> Response:
    team_id = request.path_params["team"]
    require_team(request, team_id, write=False)
    return json_response(await team_usage(services(request), team_id))


async def list_keys(request: Request) -> Response:
    team_id = request.path_params["team"]
    require_team(request, team_id, write=False)
    gateway = services(request)
    found = sorted(
        (
            (key_id, doc)
            for key_id, doc in gateway.control.snapshot.kind(runtime_keys.KIND).items()
            if doc.get("team") == team_id
        ),
        key=lambda item: (item[1].get("created_at", 0), item[0]),
    )
    data = await admin_keys.with_usage(gateway, found)
    return json_response({"object": "list", "data": data})


async def create_key(request: Request) -> Response:
    team_id = request.path_params["team"]
    actor = require_team(request, team_id, write=True)
    gateway = services(request)
    _, document = team(gateway, team_id)
    body = json_object(await request.body(), KEY_FIELDS, required=("user",))
    user = text(body, "user")
    if user not in (document.get("members") or ()):
        raise InvalidRequest(f"'{user}' is not a member of team '{team_id}'.", param="user")
    settings = admin_keys.checked_settings(gateway, {**body, "tier": document["tier"]})
    within_team(gateway, team_id, document, settings)
    key = {
        "user": user,
        **settings,
        "team": team_id,
        "created_at": int(gateway.clock()),
        "created_by": actor.name,
    }
    secret = runtime_keys.new_secret()
    key["secrets"] = [{"sha256": sha256_hex(secret), "until": None}]
    key_id = runtime_keys.new_id()
    await admin_keys.put_key(gateway, actor, key_id, key, "team_key.create")
    return json_response({**admin_keys.public_view(key_id, key), "key": secret}, status=201)


async def rotate_key(request: Request) -> Response:
    return await admin_keys.rotate_as(request, _team_key(request), "team_key.rotate")


async def revoke_key(request: Request) -> Response:
    return await admin_keys.revoke_as(request, _team_key(request), "team_key.revoke")


def _team_key(request: Request) -> Actor:
    """403/404 unless the caller may change the team's keys and the key is the team's."""
    team_id = request.path_params["team"]
    actor = require_team(request, team_id, write=True)
    key_id = request.path_params["id"]
    key = services(request).control.snapshot.kind(runtime_keys.KIND).get(key_id)
    if key is None or key.get("team") != team_id:
        raise NotFound(f"No API key '{key_id}' in team '{team_id}'.", param="id")
    return actor


def within_team(
    gateway: Services, team_id: str, document: Mapping[str, Any], settings: Mapping[str, Any]
) -> None:
    """400 unless a key's models and limits lie within its team's (and organization's)."""
    limits = document.get("limits") or {}
    org = gateway.control.snapshot.kind(ORGS).get(str(document.get("org"))) or {}
    allowed = narrowed(models_of(org.get("limits") or {}), models_of(limits))
    check_narrower(settings.get("models"), allowed, f"team '{team_id}'")
    budget, team_budget = settings.get("budget_usd") or {}, limits.get("budget_usd") or {}
    for period in ("day", "month"):
        _not_above(budget.get(period), team_budget.get(period), f"budget_usd.{period}")
    for name, (measure, window) in CEILINGS.items():
        _not_above(settings.get(name), (limits.get(measure) or {}).get(window), name)
    _not_above(settings.get("max_parallel"), limits.get("max_parallel"), "max_parallel")


def _not_above(value: object, ceiling: object, name: str) -> None:
    if isinstance(value, int | float) and isinstance(ceiling, int | float) and value > ceiling:
        raise InvalidRequest(
            f"'{name}' may not exceed the team's limit of {ceiling:g}.", param=name
        )


async def team_usage(gateway: Services, team_id: str) -> dict[str, Any]:
    """The team's counters in their current windows (in flight included), and its limits."""
    _, document = team(gateway, team_id)
    org = gateway.control.snapshot.kind(ORGS).get(str(document.get("org"))) or {}
    zone = str(org.get("timezone") or "UTC")
    windows = list(zoned(zone, gateway.clock()))
    names = [level_limits.window_key("team", team_id, w) for w in windows]
    names.append(f"{level_limits.base('team', team_id)}:par")
    try:
        hashes = await gateway.control.read_counters(names)
    except StoreError:
        raise StoreUnavailable("The store is unavailable; try again") from None
    shown: dict[str, Any] = {"team": team_id, "timezone": zone}
    for window, counted in zip(windows, hashes, strict=False):
        shown[window.name] = {
            "requests": counted.get("req", 0),
            "tokens": counted.get("tok", 0),
            "usd": micros_to_usd(counted.get("usd", 0)),
            "resets_at": iso_utc(window.reset),
        }
    shown["in_flight"] = hashes[-1].get("n", 0)
    shown["limits"] = document.get("limits") or {}
    return shown
