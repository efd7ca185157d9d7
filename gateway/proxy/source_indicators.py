"""Model-source indicators in answer bodies, in the integration plan's shape.

The plan's fields (``provider_id``, ``display_name``, ``is_free_tier``, ``is_fallback``) go
beside the gateway's own, as ``model_source_indicator`` in JSON answers and in the first chunk
of a stream.

The fields fixed by (tier, model) are serialised once per pair at config load; a request adds
only ``is_fallback``, ``attempts`` and its id, and the object is spliced into the answer's
bytes (no re-serialising of the answer)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from gateway.config.model import Config, Model, Upstream
from gateway.proxy.context import RequestContext
from gateway.proxy.flag_gate import FREE_TIER, is_together

BODY_KEY = b'"model_source_indicator":'
# upstream name → (provider_id, display_name); others are named after their upstream
PROVIDERS: Mapping[str, tuple[str, str]] = {
    "together": ("together_ai", "Together AI"),
    "openai": ("openai", "OpenAI"),
    "anthropic": ("anthropic", "Anthropic"),
    "local": ("local", "Local model"),
    "demo": ("demo", "Demo (simulated)"),
}


def provider_identity(upstream: Upstream) -> tuple[str, str]:
    """(provider_id, display_name) of an upstream."""
    if is_together(upstream):
        return PROVIDERS["together"]
    return PROVIDERS.get(upstream.name, (upstream.name, upstream.name))


def static_fields(tier: str, model: Model) -> dict[str, object]:
    """What (tier, model) fixes of the indicator, in the plan's names and the gateway's."""
    provider_id, display_name = provider_identity(model.upstream)
    return {
        "provider_id": provider_id,
        "display_name": display_name,
        "is_free_tier": tier == FREE_TIER,
        "provider": model.upstream.name,
        "model": model.name,
        "upstream_model": model.upstream_model,
        "tier": tier,
    }


def _prefix(tier: str, model: Model) -> bytes:
    return orjson.dumps(static_fields(tier, model))[:-1] + b","


class SourceIndicators:
    """The indicator object's bytes for one answer."""

    def __init__(self, config: Config) -> None:
        self._prefixes: dict[tuple[str, str, str | None], bytes] = {}
        for tier in config.tiers.values():
            for chain in tier.routes.values():
                for model in chain:
                    for each in (model, *model.deployments):
                        key = (tier.name, each.name, each.deployment)
                        self._prefixes[key] = _prefix(tier.name, each)

    def object_bytes(self, ctx: RequestContext) -> bytes | None:
        model, principal = ctx.model, ctx.principal
        if model is None or principal is None:
            return None
        key = (principal.tier.name, model.name, model.deployment)
        prefix = self._prefixes.get(key)
        if prefix is None:  # a model outside the tier's chains (a cache entry's, BYOK's)
            prefix = self._prefixes[key] = _prefix(principal.tier.name, model)
        fallback = b"true" if ctx.fallback else b"false"
        return b"".join(
            (
                prefix,
                b'"is_fallback":',
                fallback,
                b',"fallback":',
                fallback,
                b',"attempts":',
                str(ctx.attempts).encode(),
                b',"request_id":',
                orjson.dumps(ctx.request_id),
                b"}",
            )
        )


def spliced(body: bytes, indicator: bytes) -> bytes | None:
    """``body`` (a non-empty JSON object) with ``model_source_indicator`` added as its last
    member; None when it is not such an object."""
    end = body.rstrip()
    if not end.endswith(b"}"):
        return None
    inner = end[:-1].rstrip()
    if inner.endswith(b"{"):  # an empty object: no comma
        return inner + BODY_KEY + indicator + b"}"
    return inner + b"," + BODY_KEY + indicator + b"}"


def into_first_event(events: bytes, indicator: bytes) -> tuple[bytes, bool]:
    """Complete SSE events with the indicator added to the first JSON data event; whether
    one was found (else the next events are tried)."""
    start = 0
    while (end := events.find(b"\n\n", start)) != -1:
        event = events[start:end]
        body = event.lstrip(b"\n")
        if body.startswith(b"data:") and not body.startswith(b"data: [DONE]"):
            payload = body[5:].lstrip(b" ")
            if payload.startswith(b"{") and b'"error"' not in payload[:16]:
                added = spliced(payload, indicator)
                if added is not None:
                    return events[:start] + b"data: " + added + events[end:], True
        start = end + 2
    return events, False
