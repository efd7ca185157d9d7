"""Who may act on one team: ``require_team`` accepts an operator, or a token scoped to it.

Team tokens are admin tokens (kind ``admin_tokens``) with role ``team_admin`` or
``team_viewer`` and a ``team``: a team admin creates, rotates and revokes its team's keys
(within the team's limits) and reads its team's usage; a team viewer reads. Neither is an
operator: ``require_role`` refuses them everywhere else (their role is not one of its ranks).
A team token signs in to the dashboard too: its session is scoped to its team in the same way
(``team_by_reference`` finds the token again on every request). Every request looks the token
up again, so a deleted token, or a deleted team or organization, stops working at once.
Operators (``admin`` / ``viewer`` tokens and sessions) may act on every team as their role
allows.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request

from gateway.control.orgs import ORGS, TEAMS
from gateway.errors import Forbidden, NotFound, Unauthorized
from gateway.http.admin.auth import (
    KIND,
    SESSION_SCOPE_KEY,
    Actor,
    admin_actor,
    check_csrf,
    require_role,
)
from gateway.http.services import Services, services
from gateway.proxy.auth import presented_key
from gateway.proxy.auth_throttle import client_address
from gateway.secret import sha256_hex

TEAM_ADMIN, TEAM_VIEWER = "team_admin", "team_viewer"
TEAM_ROLES = (TEAM_VIEWER, TEAM_ADMIN)  # each may do what the ones before it may


def require_team(request: Request, team: str, *, write: bool) -> Actor:
    """The caller if it may read (``write`` False) or change ``team``'s keys; 401 / 403, and
    404 for a team that does not exist (after the caller was found to be allowed)."""
    gateway = services(request)
    presented = presented_key(request.headers)
    session: Mapping[str, Any] | None = request.scope.get(SESSION_SCOPE_KEY)
    if presented is None and session is not None and session["role"] in TEAM_ROLES:
        check_csrf(request, session)
        actor = Actor(str(session["name"]), str(session["role"]))
        return _known(request, team, _scoped(actor, str(session["team"]), team, write))
    if presented is None and session is not None:
        return _known(request, team, require_role(request, "admin" if write else "viewer"))
    if presented is not None and admin_actor(gateway, presented) is not None:
        return _known(request, team, require_role(request, "admin" if write else "viewer"))
    if presented is None:
        raise Unauthorized("This endpoint needs an admin or team token.")
    throttle, address = gateway.keyring.throttle, client_address(request.scope)
    if throttle.active:
        throttle.check(address, presented)
    found = team_token(gateway, presented)
    if found is None:
        throttle.failed("admin", address, presented)
        raise Unauthorized("This endpoint needs an admin or team token.")
    actor, scope = found
    return _known(request, team, _scoped(actor, scope, team, write))


def _scoped(actor: Actor, scope: str, team: str, write: bool) -> Actor:
    """``actor`` (a team role scoped to ``scope``) if it may read or change ``team``."""
    if scope != team:
        raise Forbidden("This token is scoped to another team.", code="wrong_team")
    if write and actor.role != TEAM_ADMIN:
        raise Forbidden(
            f"This endpoint needs the {TEAM_ADMIN} role; this token has {actor.role}.",
            code="insufficient_role",
        )
    return actor


def team_scope(request: Request) -> str | None:
    """The team a team token is scoped to; None for any other caller."""
    presented = presented_key(request.headers)
    found = team_token(services(request), presented) if presented is not None else None
    return found[1] if found is not None else None


def team_token(gateway: Services, presented: str) -> tuple[Actor, str] | None:
    """The team token ``presented`` and its team, or None (not throttled: see callers)."""
    digest = sha256_hex(presented).encode()
    found = None
    tokens = gateway.control.snapshot.kind(KIND)
    for token_id, document in tokens.items():  # every one compared: no early exit on a match
        stored = str(document.get("sha256", "")).encode()
        if hmac.compare_digest(stored, digest) and found is None:
            role, team = document.get("role"), document.get("team")
            if role in TEAM_ROLES and isinstance(team, str):
                found = (Actor(f"token:{token_id}", str(role)), team)
    if found is None or not _team_alive(gateway, found[1]):
        return None
    return found


def _team_alive(gateway: Services, team: str) -> bool:
    """The team exists and so does its organization (another replica may have deleted it)."""
    snapshot = gateway.control.snapshot
    team_document = snapshot.kind(TEAMS).get(team)
    return team_document is not None and team_document.get("org") in snapshot.kind(ORGS)


def team_by_reference(
    gateway: Services, name: str, matches: Callable[[str], bool]
) -> tuple[Actor, str] | None:
    """The team token ``name`` ("token:<id>") and its team if its digest still ``matches`` (a
    dashboard session's keyed reference) and its team and the team's organization still
    exist; None otherwise."""
    kind, _, token_id = name.partition(":")
    snapshot = gateway.control.snapshot
    document = snapshot.kind(KIND).get(token_id) if kind == "token" else None
    if document is None or not matches(str(document.get("sha256", ""))):
        return None
    role, team = document.get("role"), document.get("team")
    if role not in TEAM_ROLES or not isinstance(team, str):
        return None
    if not _team_alive(gateway, team):
        return None
    return Actor(name, str(role)), team


def _known(request: Request, team: str, actor: Actor) -> Actor:
    if team not in services(request).control.snapshot.kind(TEAMS):
        raise NotFound(f"No team '{team}'.", param="team")
    return actor
