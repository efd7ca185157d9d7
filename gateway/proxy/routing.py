"""Pure route resolution: (endpoint, requested model, body hints, tier) → ``Plan``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from gateway.config.model import CAPABILITY_BY_MODALITY, Config, Model, Tier
from gateway.errors import Forbidden, InvalidRequest, ModelNotFound

AUTO = "auto"


@dataclass(frozen=True)
class Endpoint:
    name: str  # metrics label, e.g. "chat.completions"
    path: str  # below /v1, e.g. "/chat/completions"
    default_route: str | None  # route for `auto` or a missing model; None: model required
    multipart: bool = False
    generates_tokens: bool = False  # max_tokens applies; streaming is possible
    binary_response: bool = False  # relay the body as it arrives (audio)
    allowed_routes: frozenset[str] | None = None  # passthrough: routes that may serve it
    bridged: bool = False  # a protocol bridge's (its answer may come back in its own API)


CHAT = Endpoint("chat.completions", "/chat/completions", "text", generates_tokens=True)
COMPLETIONS = Endpoint("completions", "/completions", "code", generates_tokens=True)
EMBEDDINGS = Endpoint("embeddings", "/embeddings", "embedding")
IMAGES = Endpoint("images.generations", "/images/generations", "image")
SPEECH = Endpoint("audio.speech", "/audio/speech", "tts", binary_response=True)
TRANSCRIPTIONS = Endpoint("audio.transcriptions", "/audio/transcriptions", "stt", multipart=True)
TRANSLATIONS = Endpoint("audio.translations", "/audio/translations", "stt", multipart=True)
MODERATIONS = Endpoint("moderations", "/moderations", "moderation")
RERANK = Endpoint("rerank", "/rerank", "rerank")
# a video job (OpenAI's shape: JSON or multipart), answered with the gateway's job id
VIDEOS = Endpoint("videos", "/videos", "video")
# The protocol bridges' requests, once translated: chat completions under their own name.
RESPONSES = Endpoint("responses", "/chat/completions", "text", generates_tokens=True, bridged=True)
MESSAGES = Endpoint("messages", "/chat/completions", "text", generates_tokens=True, bridged=True)
KNOWN_ENDPOINTS = (
    CHAT,
    COMPLETIONS,
    EMBEDDINGS,
    IMAGES,
    SPEECH,
    TRANSCRIPTIONS,
    TRANSLATIONS,
    MODERATIONS,
    RERANK,
    VIDEOS,
)


def passthrough_endpoint(path: str, routes: frozenset[str] | None = None) -> Endpoint:
    """A POST path the config declares (e.g. video generation), forwarded as it is, for models
    of ``routes`` (None: any route)."""
    return Endpoint("passthrough", path, None, binary_response=True, allowed_routes=routes)


@dataclass(frozen=True)
class Plan:
    route: str  # the route kind the request resolved through (text, code, ...)
    capability: str  # quota capability
    chain: tuple[Model, ...]  # targets in order: the first, then fallbacks
    # a model outside the tier that the tier's ``byok_models`` lets a caller's own key unlock
    byok_only: bool = False


def resolve(
    config: Config, tier: Tier, endpoint: Endpoint, requested: str | None, body: Mapping[str, Any]
) -> Plan:
    name = requested if requested and requested != AUTO else default_route(endpoint, body)
    if name is None:
        raise ModelNotFound("This endpoint needs a 'model' naming a model or route.", param="model")
    chain = tier.lookup.get(name)
    if chain:
        served = _tier_plan(tier, name, chain)
        if endpoint.allowed_routes is not None and served.route not in endpoint.allowed_routes:
            raise InvalidRequest(
                f"POST /v1{endpoint.path} does not serve '{served.route}' models.", param="model"
            )
        return served
    if tier.byok_models is not None and (plan := byok_plan(config, tier, endpoint, name)):
        return plan
    if name in config.known_models or name in config.known_routes:
        raise Forbidden(
            f"The model '{name}' is not available in the '{tier.name}' tier.", param="model"
        )
    raise ModelNotFound(f"The model '{name}' does not exist.", param="model")


# The plan of each (tier, name) the tier serves, made once (a plan is immutable): by the tier's
# identity, the tier and chain kept to tell a reloaded config's tier from one at the same address
_TIER_PLANS: dict[tuple[int, str], tuple[Tier, tuple[Model, ...], Plan]] = {}
_TIER_PLANS_MAX = 4096


def _tier_plan(tier: Tier, name: str, chain: tuple[Model, ...]) -> Plan:
    """``Plan`` of ``name`` in ``tier`` (``chain`` its lookup), as ``resolve`` makes it."""
    key = (id(tier), name)
    known = _TIER_PLANS.get(key)
    if known is not None and known[0] is tier and known[1] is chain:
        return known[2]
    route = name if name in tier.routes else chain[0].modality
    plan = Plan(route, CAPABILITY_BY_MODALITY[route], chain)
    if len(_TIER_PLANS) >= _TIER_PLANS_MAX:
        _TIER_PLANS.clear()  # configs come and go (reloads): the cache is rebuilt as it is used
    _TIER_PLANS[key] = (tier, chain, plan)
    return plan


def within_allow_list(plan: Plan, allowed: frozenset[str], requested: str | None) -> Plan:
    """``plan`` with its chain cut to what a key's allow-list names: a target by its name or
    upstream id, or all of them when the list names the route itself. A 403 naming the model
    when nothing is left. The plan itself (no copy) when every target is allowed."""
    if plan.route in allowed or all(
        m.name in allowed or m.upstream_model in allowed for m in plan.chain
    ):
        return plan
    chain = tuple(m for m in plan.chain if m.name in allowed or m.upstream_model in allowed)
    if not chain:
        raise Forbidden(
            f"This API key may not use the model '{requested or plan.route}' nor any of its "
            f"fallbacks; allowed: {', '.join(sorted(allowed))}.",
            param="model",
        )
    return replace(plan, chain=chain)


def byok_plan(config: Config, tier: Tier, endpoint: Endpoint, name: str) -> Plan | None:
    """The plan for ``name`` when the tier's ``byok_models`` unlocks it for a caller's own key:
    a configured model by its name (sent as its upstream id), else the id as it is, to the
    provider that serves it. None for a name it does not cover, and for video jobs (their
    records name a configured model) and passthrough paths."""
    assert tier.byok_models is not None
    route = endpoint.default_route
    if route is None or route == "video":
        return None
    configured = config.models.get(name)
    if configured is not None:
        byok = tier.byok_models
        unlocked = {byok.upstream_for(name), byok.upstream_for(configured.upstream_model)}
        if configured.upstream.name not in unlocked or configured.modality == "video":
            return None
        return Plan(configured.modality, CAPABILITY_BY_MODALITY[configured.modality],
                    (configured,), byok_only=True)  # fmt: skip
    upstream_name = tier.byok_models.upstream_for(name)
    found = config.upstreams.get(upstream_name) if upstream_name else None
    if found is None:
        return None
    model = Model(name, found, name, route)
    return Plan(route, CAPABILITY_BY_MODALITY[route], (model,), byok_only=True)


def own_key_required(plan: Plan, tier: Tier) -> Forbidden:
    """The 403 of a ``byok_only`` plan asked for without the caller's own upstream key."""
    model = plan.chain[0]
    return Forbidden(
        f"The model '{model.name}' is not in the '{tier.name}' tier; it can be used only with "
        f"your own '{model.upstream.name}' API key (stored as your key for that upstream, or "
        "sent in the X-Upstream-Api-Key header).",
        param="model",
        code="own_key_required",
    )


def default_route(endpoint: Endpoint, body: Mapping[str, Any]) -> str | None:
    if endpoint is CHAT or endpoint is RESPONSES or endpoint is MESSAGES:
        if has_image_parts(body.get("messages")):
            return "vision"
        if body.get("purpose") == "coding" or body.get("language"):
            return "code"
    elif endpoint is COMPLETIONS and body.get("purpose") not in (None, "coding"):
        return "text"
    return endpoint.default_route


def has_image_parts(messages: Any) -> bool:
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(part, dict) and part.get("type") in ("image_url", "input_image")
            for part in content
        ):
            return True
    return False
