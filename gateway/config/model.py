"""The gateway's configuration as frozen dataclasses, built once by ``config_load``.

Lookup tables for the hot path (per-tier name → fallback chain) are precomputed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from gateway.secret import Secret

# Route names a tier may define, and the quota capability each one meters against.
CAPABILITY_BY_MODALITY: Mapping[str, str] = {
    "text": "text_generation",
    "code": "code_generation",
    "vision": "vision_analysis",
    "image": "image_generation",
    "tts": "audio_tts",
    "stt": "audio_stt",
    "embedding": "embeddings",
    "moderation": "moderation",
    "rerank": "rerank",
    "video": "video_generation",
}
MODALITIES = tuple(CAPABILITY_BY_MODALITY)
CAPABILITIES = tuple(CAPABILITY_BY_MODALITY.values())


@dataclass(frozen=True)
class Upstream:
    name: str
    base_url: str
    api_key: Secret | None
    requires_key: bool = False  # api_key_env is declared: without a key (or BYOK) skip it
    connect_timeout_s: float = 5.0
    first_byte_timeout_s: float = 30.0
    idle_timeout_s: float = 60.0
    api: str = "openai"  # the provider API it speaks (see UPSTREAM_APIS)
    # job APIs: GET /v1/videos/{id}/content streams the bytes, or redirects to a signed URL
    video_content: str = "stream"
    api_key_env: str | None = None  # the variable names, for start-up lines and `gateway check`
    api_key_source: str | None = None  # the variable the key came from (api_key_env or an alias)
    base_url_env: str | None = None
    # an OpenAI-compatible upstream that serves POST /responses itself: /v1/responses is
    # passed through to it rather than bridged through chat completions
    responses_api: bool = False

    @property
    def takes_key(self) -> bool:
        """The upstream authenticates with a key from its config (a caller's own key only
        counts as BYOK here; a keyless one, e.g. a local model, also takes stored keys)."""
        return self.requires_key or self.api_key is not None

    def speaks(self, client_api: str) -> bool:
        """Whether it serves a client API (``responses``, ``messages``) natively."""
        if client_api == "messages":
            return self.api == "anthropic"
        return client_api == "responses" and self.responses_api and self.api == "openai"


# The provider APIs an upstream may speak: OpenAI-compatible (relayed as is), Anthropic's
# Messages API (translated), and the video job APIs.
UPSTREAM_APIS = (
    "openai", "anthropic", "openai-videos", "together-video", "replicate", "runway", "stability",
)  # fmt: skip
VIDEO_APIS = frozenset({"openai-videos", "together-video", "replicate", "runway", "stability"})


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens, plus per-unit prices for non-token models."""

    input: float = 0.0
    output: float = 0.0
    per_image: float = 0.0
    per_minute: float = 0.0
    per_second: float = 0.0  # USD per second of generated video


@dataclass(frozen=True)
class Model:
    name: str
    upstream: Upstream
    upstream_model: str
    modality: str
    context_length: int | None = None
    price: Price = field(default_factory=Price)
    reasoning: bool = False  # it takes chat's ``reasoning_effort`` (a reasoning model)
    # one of several deployments of the model (its label), and the model's deployments: the
    # least loaded is tried first, a failed one retried on a sibling (``proxy/deployments.py``)
    deployment: str | None = None
    deployments: tuple[Model, ...] = ()

    @property
    def breaker_key(self) -> str:
        """The circuit breaker's key: each deployment of a model has its own."""
        return f"{self.name}@{self.deployment}" if self.deployment else self.name


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 2  # tries per model, the first included
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0
    max_retry_after_s: float = 10.0  # a longer retry-after moves to the next model instead
    on_status: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    # From the first attempt until an answer has started (status and first chunk, or a whole
    # JSON answer), across every retry and fallback: no attempt starts after it, the one in
    # flight is cut at it (504). A stream's later gaps are the idle timeout's.
    deadline_s: float = 30.0


@dataclass(frozen=True)
class BreakerPolicy:
    failures: int = 5
    window_s: float = 30.0
    cooldown_s: float = 15.0
    # A half-open probe with no verdict by then is taken as lost, and another one may go.
    probe_timeout_s: float = 120.0


@dataclass(frozen=True)
class Quota:
    """Limits for one capability; ``None`` means unlimited."""

    requests_per_day: int | None = None
    tokens_per_day: int | None = None
    tokens_per_request: int | None = None
    minutes_per_day: float | None = None


@dataclass(frozen=True)
class Budget:
    usd_per_day: float | None = None
    usd_per_month: float | None = None


@dataclass(frozen=True)
class CachePolicy:
    """One route's exact response cache in one tier."""

    ttl_s: int = 0  # 0: nothing cached unless a request asks (``x-gateway-cache: ttl=N``)
    allow: bool = True  # False: requests may not ask for caching either
    shared: bool = False  # one entry for every user of the tier (else per user)
    coalesce: bool = True  # concurrent identical misses go upstream once
    # keep each answer only to stand in when every target fails (no fresh hits without ttl_s)
    fallback: bool = False


@dataclass(frozen=True)
class CacheSettings:
    """Process-wide response cache limits (tiers.yaml ``cache:``)."""

    stale_s: int = 86_400  # how long past its TTL an entry may still answer a failed chain
    max_entry_bytes: int = 1024 * 1024  # larger answers are not cached
    max_ttl_s: int = 86_400  # the longest TTL a request may ask for


@dataclass(frozen=True)
class LedgerOptions:
    """tiers.yaml ``ledger:``: the usage ledger's options (``GATEWAY_LEDGER_*`` override
    each; ``DATABASE_URL`` is env only). Read at start: a change needs a restart."""

    auto_migrate: bool = True  # apply pending migrations when a shipper starts
    ship: bool = True  # run a shipper in each gateway process
    retention_days: int = 400  # day partitions of usage_records kept; 0 keeps all
    rollup_retention_days: int = 800  # rollup days kept (never fewer than retention); 0: all
    batch: int = 1000  # stream entries per insert
    claim_idle_ms: int = 30_000  # a pending entry this idle belonged to a dead consumer
    linger_ms: int = 200  # after a short batch, wait this long so the next one gathers more
    stream_cap: int = 10_000_000  # the settle's MAXLEN with the ledger on (a safety net)


@dataclass(frozen=True)
class ByokModels:
    """A tier's ``byok_models``: model ids a caller with an own upstream key may name beyond
    the tier's chains, passed through to the upstream (by name) that serves them."""

    any_upstream: str | None = None  # any id not listed goes to this upstream
    listed: Mapping[str, str] = field(default_factory=dict)  # model id → its upstream

    def upstream_for(self, model_id: str) -> str | None:
        return self.listed.get(model_id) or self.any_upstream


@dataclass(frozen=True)
class Tier:
    name: str
    routes: Mapping[str, tuple[Model, ...]]
    max_tokens: int | None = None
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    user_budget: Budget = field(default_factory=Budget)  # each user of the tier
    tier_budget: Budget = field(default_factory=Budget)  # the whole tier together
    # requested name (route, model name or upstream id) → chain to try, precomputed
    lookup: Mapping[str, tuple[Model, ...]] = field(default_factory=dict)
    # route → a rollout weight per chain entry (0: fallback only); routes without weights absent
    weights: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    on_exhausted: str = "reject"  # or "downgrade": a cheaper model of the chain, or fewer tokens
    batch_price_percent: int = 100  # a batch's requests cost this share of the list price
    batch_concurrency: int | None = None  # batch lines in flight per replica, all its users
    # what a protocol bridge does with a field it cannot carry: "refuse" (400 naming it) or
    # "drop" (named in the x-gateway-dropped-fields header)
    unsupported_fields: str = "refuse"
    # the monthly statement (``metering/statements.py``): a fee for each month with usage, and
    # the share of (fee + charged usage) taken off for a user who used their own key that month
    monthly_fee_usd: Decimal = Decimal(0)
    byok_discount_percent: Decimal = Decimal(0)

    # route → its response cache policy (``proxy/cache.py``); a route not listed allows
    # per-request caching (``x-gateway-cache: ttl=N``) and caches nothing unasked
    cache: Mapping[str, CachePolicy] = field(default_factory=dict)
    # the tier as tiers.yaml lists it, where it is served otherwise (``--demo`` serves a route
    # without a keyed target from the demo model alone): rollout weights name its models
    as_listed: Tier | None = None
    # models a caller's own key unlocks beyond the chains (None: none; resolved on a miss only)
    byok_models: ByokModels | None = None

    def quota(self, capability: str) -> Quota:
        return self.quotas.get(capability, UNLIMITED)

    @cached_property
    def adapted(self) -> Mapping[str, tuple[Model, ...]]:
        """Requested name → the deployments behind the Anthropic adapter that may answer it;
        a name whose chain has none is absent (chat's field check, ``proxy/chat_fields.py``,
        runs only for a tier where this is not empty)."""
        return {
            name: found for name, chain in self.lookup.items() if (found := adapter_models(chain))
        }


UNLIMITED = Quota()


@dataclass(frozen=True)
class ClientKey:
    user: str
    tier: str
    key_sha256: str


@dataclass(frozen=True)
class UserOverride:
    quotas: Mapping[str, Quota] = field(default_factory=dict)
    budget: Budget | None = None


@dataclass(frozen=True)
class AlertRule:
    scope: str  # "overall" or "tier:<name>"
    usd_per_day: float | None = None
    usd_per_month: float | None = None


@dataclass(frozen=True)
class Alerts:
    webhook_url: str | None = None
    rules: tuple[AlertRule, ...] = ()


@dataclass(frozen=True)
class ContentUrlPolicy:
    """Which URLs chosen by a video upstream (its finished file) the gateway may fetch or
    redirect to (``providers/content_fetch.py``)."""

    hosts: frozenset[str] = frozenset()  # empty: any public host; ``*.domain``: its subdomains
    allow_insecure: bool = False  # http and non-public addresses too: local testing only


@dataclass(frozen=True)
class Settings:
    max_body_bytes: int = 32 * 1024 * 1024
    model_source_indicator: bool = True
    on_store_error: str = "allow"  # or "deny"
    usage_stream_maxlen: int = 1_000_000
    usage_buffer_max: int = 100_000
    shutdown_grace_s: float = 30.0
    # A reservation not settled by then (its worker died) is given back by a sweep.
    reservation_lease_s: int = 900
    # A tier's shared budget counted on this many counters (slots): metering/tier_shards.py
    tier_budget_shards: int = 1
    # What any upstream may send, so that no upstream can exhaust the gateway's memory.
    max_upstream_body_bytes: int = 64 * 1024 * 1024  # an answer read whole (JSON)
    max_sse_event_bytes: int = 4 * 1024 * 1024  # one event of a stream
    max_upstream_header_bytes: int = 64 * 1024
    max_upstream_headers: int = 100
    # strict: /readyz is 503 while any tier has a route none of whose targets can be tried
    readiness: str = "strict"  # or "lenient"
    # Responses API answers kept for previous_response_id and GET /v1/responses/{id}
    responses_ttl_s: int = 30 * 86400
    video_content: ContentUrlPolicy = field(default_factory=ContentUrlPolicy)
    max_open_video_jobs: int = 20  # per user: each open job is polled upstream


@dataclass(frozen=True)
class FlagDefault:
    """A feature flag's default from tiers.yaml ``flags:`` (run-time values override it)."""

    enabled: bool = True
    rollout_percent: float = 100.0  # sticky per user: a hash of flag + user picks the bucket
    description: str = ""


@dataclass(frozen=True)
class Config:
    upstreams: Mapping[str, Upstream]
    models: Mapping[str, Model]
    tiers: Mapping[str, Tier]
    keys: tuple[ClientKey, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    users: Mapping[str, UserOverride] = field(default_factory=dict)
    alerts: Alerts = field(default_factory=Alerts)
    settings: Settings = field(default_factory=Settings)
    # every model name and upstream id in routes.yaml, to tell 403 from 404
    known_models: frozenset[str] = frozenset()
    # every route name used by any tier, likewise
    known_routes: frozenset[str] = frozenset()
    # POST paths below /v1 forwarded as they are (besides the known endpoints) → the routes
    # whose models may serve them; nothing else passes through
    passthrough: Mapping[str, frozenset[str]] = field(default_factory=dict)
    flags: Mapping[str, FlagDefault] = field(default_factory=dict)  # tiers.yaml ``flags:``
    cache: CacheSettings = field(default_factory=CacheSettings)
    ledger: LedgerOptions = field(default_factory=LedgerOptions)  # tiers.yaml ``ledger:``


def adapter_models(chain: tuple[Model, ...]) -> tuple[Model, ...]:
    """The models and deployments of ``chain`` behind the Anthropic adapter."""
    return tuple(d for m in chain for d in (m, *m.deployments) if d.upstream.api == "anthropic")


def build_lookup(routes: Mapping[str, tuple[Model, ...]]) -> dict[str, tuple[Model, ...]]:
    """Route name → its chain; a model's name or upstream id → it, then the rest of its chain.

    A model listed in several chains resolves through the first route that lists it. Names are
    entered before upstream ids, so a model's own name is never taken by another model whose
    upstream id is spelled the same.
    """
    lookup: dict[str, tuple[Model, ...]] = dict(routes)
    for chain in routes.values():
        for index, model in enumerate(chain):
            lookup.setdefault(model.name, chain[index:])
    for chain in routes.values():
        for index, model in enumerate(chain):
            lookup.setdefault(model.upstream_model, chain[index:])
    return lookup
