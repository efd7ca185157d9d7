"""What a bridged request does with the fields its bridge cannot carry: refuse, drop or send.

The chain the request names decides: when every model of it serves the client's API natively,
the body goes as it is; else a field the chat translation cannot carry is refused by name (the
default) or, for a tier with ``unsupported_fields: drop``, dropped and named in the
``x-gateway-dropped-fields`` header. ``reasoning`` is carried (as ``reasoning_effort``) only to
models declared ``reasoning: true``; a ``json_object`` text format not to models behind the
Anthropic adapter (it has no JSON mode), nor a ``service_tier`` other than auto or default.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from gateway.config.model import Model, Tier
from gateway.protocols.dropping import remove
from gateway.protocols.fields import CHAT_ANTHROPIC, Refused, harmless
from gateway.protocols.native import NativeRequest
from gateway.proxy.incoming import Incoming
from gateway.proxy.routing import AUTO

DROPPED_HEADER = "x-gateway-dropped-fields"
# refused by the plan, after the translation (which left them in the native body)
LATE_REFUSALS = ("reasoning", "text.format", "service_tier")
IMAGE_TYPES = ("input_image", "image", "image_url")
# in the chat body of a request every target of which gets the native body (never sent)
NATIVE_DIGEST = "gateway_native_body_sha256"


def _chain(tier: Tier, fields: Mapping[str, Any], items: str) -> tuple[Model, ...]:
    """Every deployment that may answer (before rollout, flags and allow-lists, which only
    narrow it): the requested model or route, else the text (or vision) route."""
    name = fields.get("model")
    if not isinstance(name, str) or not name or name == AUTO:
        name = "vision" if _has_images(fields.get(items)) else "text"
    return tuple(d for m in tier.lookup.get(name, ()) for d in (m, *m.deployments))


def _has_images(items: Any) -> bool:
    for item in items if isinstance(items, list) else ():
        parts = item.get("content") if isinstance(item, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if isinstance(part, dict) and part.get("type") in IMAGE_TYPES:
                return True
    return False


class BridgePlan:
    """A bridged request's translation and what becomes of the fields the bridge refuses:
    with every target speaking the client's API the body goes as is (the chat body then only
    sizes the quota estimate); else they are refused by the first, or dropped and named
    when the tier says ``unsupported_fields: drop``."""

    def __init__(self, api: str, tier: Tier, chain: tuple[Model, ...], native_only: bool) -> None:
        self.api, self._tier, self._chain = api, tier, chain
        self.native_only = native_only
        self.dropped: list[str] = []

    def settle(self, chat: dict[str, Any], refusals: list[Refused]) -> None:
        """Refuse or drop ``refusals`` (plus ``reasoning`` for a chain that cannot reason, and
        a ``json_object`` format or a ``service_tier`` for one with models behind the
        Anthropic adapter)."""
        if self.native_only:
            return
        bridged = [m for m in self._chain if not m.upstream.speaks(self.api)]
        if "reasoning_effort" in chat and not all(_reasons(m) for m in bridged):
            refusals = [*refusals, _no_reasoning(bridged)]
            chat.pop("reasoning_effort")
        if _json_object(chat) and any(m.upstream.api == "anthropic" for m in bridged):
            refusals = [*refusals, _no_json_object(bridged)]
            chat.pop("response_format")
        if _tiered(chat) and any(m.upstream.api == "anthropic" for m in bridged):
            refusals = [*refusals, _no_service_tier(bridged)]
            chat.pop("service_tier")
        if not refusals:
            return
        if self._tier.unsupported_fields != "drop":
            raise refusals[0]
        self.dropped = [refusal.field for refusal in refusals]

    def incoming(self, chat: dict[str, Any], body: dict[str, Any]) -> Incoming:
        """What the pipeline runs: the chat body, and ``body`` (the client's, as a native
        target gets it) beside it when a target speaks the API. With every target native the
        chat body only sizes the quota and keys the response cache, so the native body's
        digest goes into it: two requests the translation cannot tell apart (a built-in tool
        more) are cached apart."""
        if not any(m.upstream.speaks(self.api) for m in self._chain):
            return Incoming(chat)
        if late := [field for field in LATE_REFUSALS if field in self.dropped]:
            body = orjson.loads(orjson.dumps(body))
            for field in late:
                remove(body, field)
        if self.native_only:
            sorted_body = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
            chat[NATIVE_DIGEST] = hashlib.sha256(sorted_body).hexdigest()
        return Incoming(chat, native=NativeRequest(self.api, body))

    def headers(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the dropped fields named (when any were)."""
        if self.dropped:
            headers[DROPPED_HEADER] = ", ".join(self.dropped)
        return headers


def plan_for(api: str, tier: Tier, fields: Mapping[str, Any], items: str) -> BridgePlan:
    """The plan for a request of ``api`` by a caller of ``tier``; ``items``: the body's field
    holding the conversation (where images would route it to vision)."""
    chain = _chain(tier, fields, items)
    native_only = bool(chain) and all(m.upstream.speaks(api) for m in chain)
    return BridgePlan(api, tier, chain, native_only)


def _reasons(model: Model) -> bool:
    """It takes chat's ``reasoning_effort``: declared so, behind an OpenAI-compatible API (the
    Anthropic adapter has no counterpart for it)."""
    return model.reasoning and model.upstream.api == "openai"


def _no_reasoning(models: list[Model]) -> Refused:
    names = ", ".join(sorted({m.name for m in models if not _reasons(m)}))
    return Refused(
        f"'reasoning' is not supported by this gateway: {names} is not declared a reasoning "
        "model (reasoning: true in routes.yaml).",
        "reasoning",
    )


def _json_object(chat: Mapping[str, Any]) -> bool:
    form = chat.get("response_format")
    return isinstance(form, dict) and form.get("type") == "json_object"


def _no_json_object(models: list[Model]) -> Refused:
    names = ", ".join(sorted({m.name for m in models if m.upstream.api == "anthropic"}))
    return Refused(
        f"'text.format' json_object is not supported by this gateway for {names} (behind the "
        "Anthropic adapter, which has no JSON mode): use a json_schema format.",
        "text.format",
    )


def _tiered(chat: Mapping[str, Any]) -> bool:
    tier = chat.get("service_tier")
    return tier is not None and not harmless(tier, CHAT_ANTHROPIC["service_tier"])


def _no_service_tier(models: list[Model]) -> Refused:
    names = ", ".join(sorted({m.name for m in models if m.upstream.api == "anthropic"}))
    return Refused(
        f"'service_tier' is not supported by this gateway for {names} (behind the Anthropic "
        "adapter): only 'auto' or 'default'.",
        "service_tier",
    )
