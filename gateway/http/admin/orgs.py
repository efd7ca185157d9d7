"""Organizations and teams for operators (``/v1/admin/orgs``, ``/v1/admin/teams``).

Creating, changing and deleting them needs the operator ``admin`` role; reading them the
``viewer`` role (a team's own page is in ``team_keys.py``, open to its team tokens too). Every
write goes through the control plane with its actor in the audit log. Model allow-lists are
checked to narrow downward on every write: a team's within its organization's, and an
organization may not be narrowed below what one of its teams or team keys allows.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.control import keys as runtime_keys
from gateway.control.orgs import (
    ORGS,
    RETIRED_TEAMS,
    TEAMS,
    check_id,
    check_limits,
    check_narrower,
    check_zone,
    models_of,
    narrowed,
)
from gateway.errors import Conflict, InvalidRequest, NotFound
from gateway.http.admin.access import TOKEN_PREFIX, public
from gateway.http.admin.auth import KIND as TOKENS
from gateway.http.admin.auth import require_role
from gateway.http.admin.input import json_object, strings, text
from gateway.http.admin.team_auth import TEAM_ROLES
from gateway.http.responses import json_response
from gateway.http.services import Services, services
from gateway.secret import sha256_hex

ORG_FIELDS = ("name", "timezone", "limits")
TEAM_FIELDS = ("name", "tier", "members", "limits")
MAX_MEMBERS = 10_000
MAX_USER_CHARS = 200  # as a key's ``user`` (``keys.checked_settings``)


def _known_models(gateway: Services) -> frozenset[str]:
    return gateway.config.known_models | gateway.config.known_routes


async def create_org(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    body = json_object(await request.body(), ("id", *ORG_FIELDS), required=("id",))
    org_id = check_id(body["id"], "id")
    if org_id in gateway.control.snapshot.kind(ORGS):
        raise Conflict(f"Organization '{org_id}' exists already.", param="id")
    document = {
        **_org_fields(gateway, body),
        "created_at": int(gateway.clock()),
        "created_by": actor.name,
    }
    await gateway.control.put(ORGS, org_id, document, actor=actor.name, action="org.create")
    return json_response(_shown("org", org_id, document), status=201)


async def list_orgs(request: Request) -> Response:
    require_role(request, "viewer")
    orgs = services(request).control.snapshot.kind(ORGS)
    data = [_shown("org", org_id, document) for org_id, document in sorted(orgs.items())]
    return json_response({"object": "list", "data": data})


async def show_org(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    org_id, document = _org(gateway, request.path_params["org"])
    teams = sorted(
        t for t, doc in gateway.control.snapshot.kind(TEAMS).items() if doc.get("org") == org_id
    )
    return json_response({**_shown("org", org_id, document), "teams": teams})


async def update_org(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    org_id, document = _org(gateway, request.path_params["org"])
    body = json_object(await request.body(), ORG_FIELDS)
    changed = {**document, **_org_fields(gateway, {**document, **body})}
    wider = models_of(changed.get("limits") or {})
    snapshot = gateway.control.snapshot
    for team_id, team in snapshot.kind(TEAMS).items():
        if team.get("org") == org_id:
            allowed = models_of(team.get("limits") or {})
            check_narrower(
                allowed, wider, f"organization '{org_id}' (team '{team_id}')", "limits.models"
            )
    await gateway.control.put(ORGS, org_id, changed, actor=actor.name, action="org.update")
    return json_response(_shown("org", org_id, changed))


async def delete_org(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    org_id, _ = _org(gateway, request.path_params["org"])
    teams = [
        t for t, doc in gateway.control.snapshot.kind(TEAMS).items() if doc.get("org") == org_id
    ]
    if teams:
        raise Conflict(f"Organization '{org_id}' still has teams: {', '.join(sorted(teams))}.")
    await gateway.control.put(ORGS, org_id, None, actor=actor.name, action="org.delete")
    return json_response({"id": org_id, "object": "organization", "deleted": True})


async def create_team(request: Request) -> Response:
    actor = require_role(request, "admin")
    gateway = services(request)
    body = json_object(
        await request.body(), ("id", "org", *TEAM_FIELDS), required=("id", "org", "tier")
    )
    team_id = check_id(body["id"], "id")
    if team_id in gateway.control.snapshot.kind(TEAMS):
        raise Conflict(f"Team '{team_id}' exists already.", param="id")
    if team_id in gateway.control.snapshot.kind(RETIRED_TEAMS):
        raise Conflict(
            f"Team id '{team_id}' belonged to a deleted team, whose usage records "
            "carry it; choose another id.",
            param="id",
        )
    org_id, _ = _org(gateway, str(body["org"]), status_404=False)
    document = {
        "org": org_id,
        **_team_fields(gateway, org_id, body),
        "created_at": int(gateway.clock()),
        "created_by": actor.name,
    }
    await gateway.control.put(TEAMS, team_id, document, actor=actor.name, action="team.create")
    return json_response(_shown("team", team_id, document), status=201)


async def list_teams(request: Request) -> Response:
    require_role(request, "viewer")
    org = request.query_params.get("org")
    teams = services(request).control.snapshot.kind(TEAMS)
    data = [
        _shown("team", team_id, doc)
        for team_id, doc in sorted(teams.items())
        if org is None or doc.get("org") == org
    ]
    return json_response({"object": "list", "data": data})


async def update_team(request: Request) -> Response:
    """Change a team's name, tier, members or limits: operators only (a team admin may not
    raise its own limits)."""
    actor = require_role(request, "admin")
    gateway = services(request)
    team_id, document = team(gateway, request.path_params["team"])
    body = json_object(await request.body(), TEAM_FIELDS)
    org_id = str(document["org"])
    changed = {**document, **_team_fields(gateway, org_id, {**document, **body})}
    wider = narrowed(
        models_of(_org(gateway, org_id)[1].get("limits") or {}),
        models_of(changed.get("limits") or {}),
    )
    for key_id, key in gateway.control.snapshot.kind(runtime_keys.KIND).items():
        if key.get("team") == team_id:
            if key.get("user") not in changed["members"]:
                raise Conflict(
                    f"Key '{key_id}' of user '{key.get('user')}' is bound to this team: "
                    "revoke it before removing its user.",
                    param="members",
                )
            check_narrower(
                key.get("models"), wider, f"team '{team_id}' (key '{key_id}')", "limits.models"
            )
    await gateway.control.put(TEAMS, team_id, changed, actor=actor.name, action="team.update")
    return json_response(_shown("team", team_id, changed))


async def delete_team(request: Request) -> Response:
    """Delete a team without keys, and its tokens with it; its id is never given again."""
    actor = require_role(request, "admin")
    gateway = services(request)
    team_id, _ = team(gateway, request.path_params["team"])
    bound = [
        k
        for k, doc in gateway.control.snapshot.kind(runtime_keys.KIND).items()
        if doc.get("team") == team_id
    ]
    if bound:
        raise Conflict(f"Team '{team_id}' still has keys: {', '.join(sorted(bound))}.")
    # its tokens go first: scoped by the team's id, they would reach a new team of that id
    scoped = sorted(
        (t, doc)
        for t, doc in gateway.control.snapshot.kind(TOKENS).items()
        if doc.get("team") == team_id
    )
    for token_id, token in scoped:
        await gateway.control.put(
            TOKENS,
            token_id,
            None,
            actor=actor.name,
            action="team_token.delete",
            audit={"before": public(token_id, token)},
        )
    retired = {"deleted_at": int(gateway.clock()), "deleted_by": actor.name}
    await gateway.control.put(
        RETIRED_TEAMS, team_id, retired, actor=actor.name, action="team.retire_id"
    )
    await gateway.control.put(TEAMS, team_id, None, actor=actor.name, action="team.delete")
    return json_response({"id": team_id, "object": "team", "deleted": True})


async def create_team_token(request: Request) -> Response:
    """A token scoped to one team (``team_admin`` or ``team_viewer``): operators only."""
    actor = require_role(request, "admin")
    gateway = services(request)
    team_id, _ = team(gateway, request.path_params["team"])
    body = json_object(await request.body(), ("role", "name"), required=("role",))
    if body["role"] not in TEAM_ROLES:
        raise InvalidRequest(f"'role' must be one of: {', '.join(TEAM_ROLES)}.", param="role")
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = "at_" + secrets.token_hex(6)
    document = {
        "sha256": sha256_hex(secret),
        "role": body["role"],
        "team": team_id,
        "name": text(body, "name"),
        "created_at": int(gateway.clock()),
        "created_by": actor.name,
    }
    await gateway.control.put(
        TOKENS,
        token_id,
        document,
        actor=actor.name,
        action="team_token.create",
        audit={"after": public(token_id, document)},
    )
    return json_response({**public(token_id, document), "token": secret}, status=201)


def _org(gateway: Services, org_id: str, *, status_404: bool = True) -> tuple[str, dict[str, Any]]:
    document = gateway.control.snapshot.kind(ORGS).get(org_id)
    if document is None:
        message = f"No organization '{org_id}'."
        raise NotFound(message, param="org") if status_404 else InvalidRequest(message, param="org")
    return org_id, document


def team(gateway: Services, team_id: str) -> tuple[str, dict[str, Any]]:
    document = gateway.control.snapshot.kind(TEAMS).get(team_id)
    if document is None:
        raise NotFound(f"No team '{team_id}'.", param="team")
    return team_id, document


def _org_fields(gateway: Services, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": text(dict(body), "name"),
        "timezone": check_zone(body.get("timezone")),
        "limits": check_limits(body.get("limits"), _known_models(gateway)),
    }


def _team_fields(gateway: Services, org_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    document = dict(body)
    tier = text(document, "tier")
    if tier not in gateway.config.tiers:
        raise InvalidRequest(
            f"Unknown tier '{tier}'; expected one of: {', '.join(sorted(gateway.config.tiers))}.",
            param="tier",
        )
    limits = check_limits(document.get("limits"), _known_models(gateway))
    org_limits = _org(gateway, org_id)[1].get("limits") or {}
    check_narrower(
        limits.get("models"), models_of(org_limits), f"organization '{org_id}'", "limits.models"
    )
    members = strings(document, "members", most=MAX_MEMBERS) or []
    if any(len(member) > MAX_USER_CHARS for member in members):  # a user name's limit
        raise InvalidRequest(
            f"'members' must be user names of at most {MAX_USER_CHARS} characters.", param="members"
        )
    return {
        "name": text(document, "name"),
        "tier": tier,
        "members": sorted(members),
        "limits": limits,
    }


def _shown(kind: str, id: str, document: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": id, "object": "organization" if kind == "org" else "team", **document}


def shown_team(team_id: str, document: Mapping[str, Any]) -> dict[str, Any]:
    return _shown("team", team_id, document)
