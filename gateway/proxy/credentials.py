"""Which key each target of a chain is sent with (the BYOK policy), and its upstream request."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from gateway.config.model import VIDEO_APIS, Model, Upstream
from gateway.providers import anthropic, video
from gateway.providers.openai import build_request
from gateway.proxy.attempts import BuildRequest
from gateway.proxy.auth import Principal
from gateway.proxy.context import RequestContext
from gateway.proxy.incoming import Incoming, rewind
from gateway.secret import Secret


def request_builder(
    ctx: RequestContext,
    incoming: Incoming,
    body: dict[str, Any],
    principal: Principal,
) -> BuildRequest:
    """``model`` → its upstream request, or None when the policy skips it."""
    primary = ctx.plan.chain[0].upstream if ctx.plan else None
    accept = "application/octet-stream" if ctx.endpoint.binary_response else None
    path = ctx.endpoint.path

    def build(model: Model) -> httpx.Request | None:
        usable, key = credential(model, principal, primary)
        if not usable:
            return None
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

    return build


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
