"""Dashboard sessions: a random id in an HttpOnly cookie, the session itself in the store.

A session is created by signing in with an admin token, a team token or a client key; the
store keeps it (who, role, user, team, CSRF token, proof) under the digest of its id for
``SESSION_TTL_S``, so every worker and replica sees it, and signing out deletes it everywhere.
``SessionLoader`` (an ASGI middleware) reads the session of requests to the dashboard and to
the APIs its pages call, only when the cookie is present, and leaves it in the request scope
for ``require_role`` (and ``require_team``).

A session never outlives its credential: ``proof`` is an HMAC of the credential's digest keyed
by the session id (which only the cookie holds), and on every request the loader finds the
credential again by its id in the control snapshot (a dict lookup), checks the proof against
its current digest, and takes role, user, tier and team from it, as Bearer auth would. A
deleted, expired, rotated-out or changed credential ends the session (its document is
deleted), and so does a team token's team or organization deleted; a re-tiered key's session
sees the new tier at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import asdict, dataclass, replace
from http.cookies import SimpleCookie
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.errors import GatewayError
from gateway.http.admin.auth import SESSION_COOKIE, SESSION_SCOPE_KEY, actor_by_reference
from gateway.http.admin.team_auth import team_by_reference
from gateway.http.services import Services
from gateway.secret import sha256_hex
from gateway.store.port import Store, StoreError

SESSION_TTL_S = 8 * 3600
PREFIXES = ("/ui", "/v1/admin", "/v1/quota", "/v1/usage", "/v1/me", "/v1/providers")


_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Session:
    name: str  # the actor signed in: "token:<id>", "env-admin", "key:<key id>"
    role: str  # "admin" | "viewer" | "user" | "team_admin" | "team_viewer"
    csrf: str
    proof: str  # HMAC(session id, the credential's sha256): the credential, never its secret
    user: str | None = None
    tier: str | None = None
    team: str | None = None  # a team token's session: the one team it sees


def _key(session_id: str) -> str:
    return f"gw:ui:session:{sha256_hex(session_id)}"


def _proof(session_id: str, credential_sha256: str) -> str:
    return hmac.new(session_id.encode(), credential_sha256.encode(), hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self,
        name: str,
        role: str,
        credential_sha256: str,
        user: str | None = None,
        tier: str | None = None,
        team: str | None = None,
    ) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        proof = _proof(session_id, credential_sha256)
        session = Session(name, role, secrets.token_urlsafe(24), proof, user, tier, team)
        await self._store.put_document(
            _key(session_id), "s", orjson.dumps(asdict(session)), SESSION_TTL_S
        )
        return session_id, session

    async def load(self, session_id: str) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        raw = await self._store.get_document(_key(session_id), "s")
        if raw is None:
            return None
        try:
            return Session(**orjson.loads(raw))
        except (orjson.JSONDecodeError, TypeError):
            return None

    async def delete(self, session_id: str) -> None:
        # an empty document expiring at once: the stores have no delete for documents
        await self._store.put_document(_key(session_id), "s", b"", 1)


def cookie_value(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header is no session
                return None
            morsel = jar.get(SESSION_COOKIE)
            if morsel is not None:
                return morsel.value
    return None


def current(gateway: Services, session_id: str, session: Session) -> Session | None:
    """``session`` as its credential stands now (role, user, tier), or None if the credential
    is gone, expired, rotated out or no longer the one signed in with."""

    def matches(credential_sha256: str) -> bool:
        return hmac.compare_digest(session.proof, _proof(session_id, credential_sha256))

    kind, _, key_id = session.name.partition(":")
    if kind == "key":
        try:
            principal = gateway.keyring.by_reference(key_id, matches)
        except GatewayError:
            return None
        return replace(session, role="user", user=principal.user, tier=principal.tier.name)
    actor = actor_by_reference(gateway, session.name, matches)
    if actor is not None:
        return replace(session, role=actor.role, user=None, tier=None, team=None)
    scoped = team_by_reference(gateway, session.name, matches)
    if scoped is None:
        return None
    return replace(session, role=scoped[0].role, user=None, tier=None, team=scoped[1])


class SessionLoader:
    """Puts the caller's session (a dict, see ``Session``) in ``scope[SESSION_SCOPE_KEY]``
    once its credential is found still valid; a session whose credential is not is deleted."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            session_id = cookie_value(scope["headers"])
            if session_id:
                session = await self._safe_load(session_id)
                if session is not None:
                    gateway: Services = scope["app"].state.gateway
                    valid = current(gateway, session_id, session)
                    if valid is None:
                        await self._end(session_id, session)
                    else:
                        scope[SESSION_SCOPE_KEY] = {**asdict(valid), "id": session_id}
        await self.app(scope, receive, send)

    async def _safe_load(self, session_id: str) -> Session | None:
        try:
            return await self._sessions.load(session_id)
        except StoreError:
            return None

    async def _end(self, session_id: str, session: Session) -> None:
        _log.info("dashboard session of %s ended: its credential is no longer valid", session.name)
        with contextlib.suppress(StoreError):  # else it is refused again at its next use
            await self._sessions.delete(session_id)


def session_of(scope: Scope) -> dict[str, Any] | None:
    found: dict[str, Any] | None = scope.get(SESSION_SCOPE_KEY)
    return found
