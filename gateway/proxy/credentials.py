"""Which key each target of a chain is sent with (the BYOK policy), and its upstream request.

Precedence, first found: the caller's ``X-Upstream-Api-Key`` header; the caller's stored key
for the chain's first upstream (while the admin setting allows user keys); the upstream's
stored system keys, in turn (one set aside after a 401/403/429 is skipped for a while); the
key of its ``api_key_env`` variable. A caller's own key (header or stored) goes only to the
chain's first upstream, and makes the request BYOK (metered, never charged), but only when that
upstream authenticates with a key (``api_key_env`` declared, or stored system keys): for a
keyless upstream (a local model) the header is ignored and the request is metered as any other.

A video job is asked about later (polled, downloaded) with a key of the same kind as the one
it was submitted with (``key_used`` notes which, never the key; ``Credentials.job_key`` picks
it): a user's key (the ``X-Upstream-Api-Key`` of the asking request, else the user's stored
key); the very stored system key, else the request path's order (stored keys in turn, then
the env key); for the env key, the env key, else the stored keys in turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import httpx
import orjson

from gateway.config.model import VIDEO_APIS, Model, Upstream
from gateway.control.upstream_keys import PooledKey, UpstreamKeyPool
from gateway.control.user_keys import UserKeys
from gateway.providers import anthropic, video
from gateway.providers.openai import build_request
from gateway.proxy.attempt_outcome import API_KEY_EXTENSION, BuildRequest
from gateway.proxy.auth import Principal
from gateway.proxy.context import RequestContext
from gateway.proxy.incoming import Incoming, rewind
from gateway.proxy.routing import Plan
from gateway.secret import Secret

POOLED_KEY_EXTENSION = "gateway_pooled_key"
RESERVE_EXTENSION = "gateway_key_reserve"  # the upstream has its env key to fall back on
KEY_SOURCE_USER, KEY_SOURCE_SYSTEM, KEY_SOURCE_ENV = "user", "system", "env"


class Credentials:
    """The stored keys requests may be sent with: system keys per upstream (``pool``) and
    users' own keys (``user_keys``); both followed from the control plane in memory."""

    def __init__(
        self, pool: UpstreamKeyPool | None = None, user_keys: UserKeys | None = None
    ) -> None:
        self._pool = pool
        self._user_keys = user_keys

    def principal_for(self, principal: Principal, plan: Plan) -> Principal:
        """``principal`` with the user's stored key for the chain's first upstream, when it
        has one and sent none in the header; without any own key when that upstream takes no
        key (a keyless local model): a key it ignores must not make the request BYOK."""
        if not plan.chain:
            return principal
        first = plan.chain[0].upstream
        if not (first.takes_key or (self._pool is not None and self._pool.has_keys(first.name))):
            return principal if principal.byok_key is None else replace(principal, byok_key=None)
        if principal.byok_key is not None or self._user_keys is None:
            return principal
        stored = self._user_keys.key_for(principal.user, first.name)
        return principal if stored is None else replace(principal, byok_key=stored)

    def builder(
        self, ctx: RequestContext, incoming: Incoming, body: dict[str, Any], principal: Principal
    ) -> BuildRequest:
        return request_builder(ctx, incoming, body, principal, self._pool)

    def job_key(
        self,
        upstream: Upstream,
        owner: str,
        used: Mapping[str, Any] | None,
        offered: Secret | None = None,
    ) -> Secret | None:
        """The key to ask ``upstream`` about a job ``owner`` submitted with the key ``used``
        describes (see ``key_used``); ``offered``: the asking request's own upstream key.
        None for a user's job when no key of the user's is at hand."""
        source = (used or {}).get("source")
        if source == KEY_SOURCE_USER:
            if offered is not None:
                return offered
            return (
                None if self._user_keys is None else self._user_keys.key_for(owner, upstream.name)
            )
        if self._pool is None:
            return upstream.api_key
        pooled = None
        if source == KEY_SOURCE_SYSTEM:
            pooled = self._pool.key(upstream.name, str((used or {}).get("fingerprint")))
        if pooled is None and (source == KEY_SOURCE_SYSTEM or upstream.api_key is None):
            pooled = self._pool.pick(upstream.name)
        return pooled.secret if pooled is not None else upstream.api_key

    def rejected(self, request: httpx.Request, status: int, retry_after: float | None) -> bool:
        """The upstream refused or rate-limited the system key ``request`` carried: set it
        aside; True when the upstream has another key to try at once."""
        key = request.extensions.get(POOLED_KEY_EXTENSION)
        if self._pool is None or not isinstance(key, PooledKey):
            return False
        another = self._pool.set_aside(key, status, retry_after)
        return another or bool(request.extensions.get(RESERVE_EXTENSION))


def key_used(request: httpx.Request | None, principal: Principal) -> dict[str, str]:
    """What a job's record notes of the key its submission ``request`` carried (never the
    key): ``{"source": "user"}``, ``{"source": "system", "fingerprint": ...}`` or
    ``{"source": "env"}``."""
    if principal.byok_key is not None:
        return {"source": KEY_SOURCE_USER}
    pooled = None if request is None else request.extensions.get(POOLED_KEY_EXTENSION)
    if isinstance(pooled, PooledKey):
        return {"source": KEY_SOURCE_SYSTEM, "fingerprint": pooled.fingerprint}
    return {"source": KEY_SOURCE_ENV}


def request_builder(
    ctx: RequestContext,
    incoming: Incoming,
    body: dict[str, Any],
    principal: Principal,
    pool: UpstreamKeyPool | None = None,
) -> BuildRequest:
    """``model`` → its upstream request, or None when the policy skips it."""
    primary = ctx.plan.chain[0].upstream if ctx.plan else None
    accept = "application/octet-stream" if ctx.endpoint.binary_response else None
    path = ctx.endpoint.path

    def build(model: Model) -> httpx.Request | None:
        pooled = None
        if principal.byok_key is None and pool is not None:
            pooled = pool.pick(model.upstream.name)
            if pooled is None and model.upstream.api_key is None:  # all set aside, no reserve
                pooled = pool.soonest(model.upstream.name)
        usable, key = (
            (True, pooled.secret) if pooled is not None else credential(model, principal, primary)
        )
        if not usable:
            return None
        request = _request(model, ctx, incoming, body, key, path, accept)
        if request is not None and key is not None:
            request.extensions[API_KEY_EXTENSION] = key
            if pooled is not None:
                request.extensions[POOLED_KEY_EXTENSION] = pooled
                request.extensions[RESERVE_EXTENSION] = model.upstream.api_key is not None
        return request

    return build


def _request(
    model: Model,
    ctx: RequestContext,
    incoming: Incoming,
    body: dict[str, Any],
    key: Secret | None,
    path: str,
    accept: str | None,
) -> httpx.Request | None:
    """The request for one target with ``key``; None when its API cannot serve it."""
    if incoming.native is not None and incoming.native.serves(model):
        return incoming.native.request(model, body, api_key=key, request_id=ctx.request_id)
    if model.upstream.api != "openai":
        return _adapted(model, ctx, incoming, body, key)
    if incoming.files:
        form = ({**body, "model": model.upstream_model}, rewind(incoming.files))
        return build_request(
            model, path, form=form, api_key=key, request_id=ctx.request_id, accept=accept
        )
    body["model"] = model.upstream_model
    return build_request(
        model,
        path,
        json_body=orjson.dumps(body),
        api_key=key,
        request_id=ctx.request_id,
        accept=accept,
    )


def _adapted(
    model: Model,
    ctx: RequestContext,
    incoming: Incoming,
    body: dict[str, Any],
    key: Secret | None,
) -> httpx.Request | None:
    """The request for an upstream that does not speak OpenAI's API; None (skipped) when its
    API cannot serve this endpoint."""
    api, path = model.upstream.api, ctx.endpoint.path
    if api == "anthropic" and path == "/chat/completions":
        return anthropic.build_request(model, body, api_key=key, request_id=ctx.request_id)
    if api in VIDEO_APIS and path == "/videos":
        files = rewind(incoming.files) if incoming.files else None
        return video.submit_request(model, body, files, api_key=key, request_id=ctx.request_id)
    return None


def credential(
    model: Model, principal: Principal, primary: Upstream | None
) -> tuple[bool, Secret | None]:
    """(may this model be tried, with which key). A BYOK key goes only to the chain's first
    provider; a provider that needs a key and has none is skipped."""
    if principal.byok_key is not None:
        return model.upstream is primary, principal.byok_key
    if model.upstream.requires_key and model.upstream.api_key is None:
        return False, None
    return True, model.upstream.api_key
