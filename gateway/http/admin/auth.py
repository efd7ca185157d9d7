"""Who is calling the admin API: ``require_role`` turns a bearer token into an ``Actor``.

Admin tokens live in the control plane (kind ``admin_tokens``: id → ``{sha256, role, name,
created_at}``; only the digest is stored); ``GATEWAY_ADMIN_TOKEN`` is an ``admin`` token too.
Role ``viewer`` may read, ``admin`` may read and write. ``require_role(request, "user")``
accepts a client key and names its user.

The dashboard's session cookie is accepted in place of a token: ``gateway/ui/session.py`` loads
the session into the request scope (``SESSION_SCOPE_KEY``) once ``actor_by_reference`` (or the
keyring, for a client key) has found its credential still valid, and a request that changes
anything (not GET/HEAD) must echo the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from gateway.errors import Forbidden, Unauthorized
from gateway.http.services import Services, services
from gateway.proxy.auth import presented_key
from gateway.proxy.auth_throttle import client_address
from gateway.secret import sha256_hex

KIND = "admin_tokens"
ROLES = ("viewer", "admin")  # each role may do what the ones before it may
RANK = {"user": -1, "viewer": 0, "admin": 1}
SESSION_COOKIE = "gw_session"
SESSION_SCOPE_KEY = "gateway.session"  # the session dict the dashboard's loader found
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Actor:
    name: str  # "token:<id>", "env-admin", "key:<key id>" (audited as "who")
    role: str  # "admin" | "viewer" | "user"
    user: str | None = None  # for role "user": the client key's user


def require_role(request: Request, role: str = "admin") -> Actor:
    """The caller, if its token grants ``role`` ("viewer" accepts admin too); 401 / 403."""
    gateway = services(request)
    presented = presented_key(request.headers)
    if presented is None and SESSION_SCOPE_KEY in request.scope:
        return session_actor(request, role)
    if role == "user":
        principal = gateway.keyring.authenticate(request.headers, request.scope)
        return Actor(f"key:{principal.key_id}", "user", principal.user)
    tokens = gateway.control.snapshot.kind(KIND)
    if gateway.runtime.admin_token is None and not tokens:
        raise Unauthorized("Set GATEWAY_ADMIN_TOKEN to use the operator endpoints.")
    if presented is None:
        raise Unauthorized("This endpoint needs an admin token.")
    throttle, address = gateway.keyring.throttle, client_address(request.scope)
    if throttle.active:
        throttle.check(address, presented)
    actor = _actor(gateway, tokens, presented)
    if actor is None and _team_scoped(tokens, presented):
        raise Forbidden(
            "This token is scoped to a team; this endpoint needs an operator token.",
            code="insufficient_role",
        )
    if actor is None:
        throttle.failed("admin", address, presented)
        raise Unauthorized("This endpoint needs an admin token.")
    if RANK[actor.role] < RANK[role]:
        raise Forbidden(
            f"This endpoint needs the {role} role; this token has {actor.role}.",
            code="insufficient_role",
        )
    return actor


def operator(request: Request) -> Actor | None:
    """The caller when it is an operator (an admin or viewer token or session), else None."""
    presented = presented_key(request.headers)
    session = request.scope.get(SESSION_SCOPE_KEY)
    if presented is None and session is not None:
        role = str(session["role"])
        return Actor(str(session["name"]), role) if role in ROLES else None
    if presented is None:
        return None
    gateway = services(request)
    return _actor(gateway, gateway.control.snapshot.kind(KIND), presented)


def session_actor(request: Request, role: str) -> Actor:
    """The dashboard session's actor, if it grants ``role``; changes need the CSRF token."""
    session: Mapping[str, Any] = request.scope[SESSION_SCOPE_KEY]
    check_csrf(request, session)
    actor = Actor(str(session["name"]), str(session["role"]), session.get("user"))
    if actor.role not in RANK:  # a team's session (``team_auth.py``)
        raise Forbidden(
            "This session is scoped to a team; this endpoint needs an operator.",
            code="insufficient_role",
        )
    if (role == "user") != (actor.role == "user") or RANK[actor.role] < RANK[role]:
        raise Forbidden(
            f"This endpoint needs the {role} role; this session has {actor.role}.",
            code="insufficient_role",
        )
    return actor


def check_csrf(request: Request, session: Mapping[str, Any]) -> None:
    """403 for a session's change (not GET/HEAD) without its CSRF token in ``X-CSRF-Token``."""
    if request.method not in ("GET", "HEAD"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), str(session["csrf"]).encode()):
            raise Forbidden("Missing or wrong CSRF token.", code="csrf_failed")


def admin_actor(gateway: Services, presented: str) -> Actor | None:
    """The operator whose token is ``presented``, or None (not throttled: see callers)."""
    return _actor(gateway, gateway.control.snapshot.kind(KIND), presented)


def actor_by_reference(
    gateway: Services, name: str, matches: Callable[[str], bool]
) -> Actor | None:
    """The operator ``name`` ("env-admin", "token:<id>") if its credential's digest still
    ``matches`` (a session's keyed reference); None once the token is deleted or changed."""
    if name == "env-admin":
        env = gateway.runtime.admin_token
        return Actor(name, "admin") if env and matches(sha256_hex(env.reveal())) else None
    kind, _, token_id = name.partition(":")
    document = gateway.control.snapshot.kind(KIND).get(token_id) if kind == "token" else None
    if document is None or not matches(str(document.get("sha256", ""))):
        return None
    role = str(document.get("role", "viewer"))
    return Actor(name, role) if role in ROLES else None


def _team_scoped(tokens: Mapping[str, dict[str, Any]], presented: str) -> bool:
    """A valid team token (``team_auth.py``): refused here, but not a failed credential."""
    digest = sha256_hex(presented).encode()
    scoped = [str(doc.get("sha256", "")).encode() for doc in tokens.values() if doc.get("team")]
    return any([hmac.compare_digest(stored, digest) for stored in scoped])  # no early exit


def _actor(gateway: Services, tokens: Mapping[str, dict[str, Any]], presented: str) -> Actor | None:
    env = gateway.runtime.admin_token
    if env is not None and hmac.compare_digest(presented.encode(), env.reveal().encode()):
        return Actor("env-admin", "admin")
    digest = sha256_hex(presented)
    found = None
    for token_id, document in tokens.items():  # every one compared: no early exit on a match
        stored = str(document.get("sha256", ""))
        if hmac.compare_digest(stored.encode(), digest.encode()) and found is None:
            found = Actor(f"token:{token_id}", str(document.get("role", "viewer")))
    if found is not None and found.role not in RANK:
        return None
    return found
