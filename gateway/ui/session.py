"""Dashboard sessions: a random id in an HttpOnly cookie, the session itself in the store.

A session is created by signing in with an admin token or a client key; the store keeps it
(who, role, user, CSRF token) under the digest of its id for ``SESSION_TTL_S``, so every worker
and replica sees it, and signing out deletes it everywhere. ``SessionLoader`` (an ASGI
middleware) reads the session of requests to the dashboard and to the APIs its pages call,
only when the cookie is present, and leaves it in the request scope for ``require_role``.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from http.cookies import SimpleCookie
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.http.admin_auth import SESSION_COOKIE, SESSION_SCOPE_KEY
from gateway.metering.store import Store, StoreError
from gateway.secret import sha256_hex

SESSION_TTL_S = 8 * 3600
PREFIXES = ("/ui", "/v1/admin", "/v1/quota", "/v1/usage", "/v1/me", "/v1/providers")


@dataclass(frozen=True)
class Session:
    name: str  # the actor signed in: "token:<id>", "env-admin", "key:<key id>"
    role: str  # "admin" | "viewer" | "user"
    csrf: str
    user: str | None = None
    tier: str | None = None


def _key(session_id: str) -> str:
    return f"gw:ui:session:{sha256_hex(session_id)}"


class Sessions:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def create(
        self, name: str, role: str, user: str | None = None, tier: str | None = None
    ) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(name, role, secrets.token_urlsafe(24), user, tier)
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


class SessionLoader:
    """Puts the caller's session (a dict, see ``Session``) in ``scope[SESSION_SCOPE_KEY]``."""

    def __init__(self, app: ASGIApp, sessions: Sessions) -> None:
        self.app = app
        self._sessions = sessions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIXES):
            session_id = cookie_value(scope["headers"])
            if session_id:
                session = await self._safe_load(session_id)
                if session is not None:
                    scope[SESSION_SCOPE_KEY] = {**asdict(session), "id": session_id}
        await self.app(scope, receive, send)

    async def _safe_load(self, session_id: str) -> Session | None:
        try:
            return await self._sessions.load(session_id)
        except StoreError:
            return None


def session_of(scope: Scope) -> dict[str, Any] | None:
    found: dict[str, Any] | None = scope.get(SESSION_SCOPE_KEY)
    return found
