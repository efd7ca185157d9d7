"""The JSON Schema of routes.yaml and tiers.yaml, and the reference tables made from it.

``gateway schema`` prints the schema; docs/configuration.md's key tables are generated from it,
so each key's description lives here once."""

# ruff: noqa: E501  (one key per line: the descriptions are a table)

from __future__ import annotations

from typing import Any

from gateway.config.model import CAPABILITIES, MODALITIES, UPSTREAM_APIS

DRAFT = "https://json-schema.org/draft/2020-12/schema"
Schema = dict[str, Any]


def _num(description: str, minimum: float | None = None, *, integer: bool = False) -> Schema:
    schema: Schema = {"type": "integer" if integer else "number", "description": description}
    if minimum is not None:
        schema["minimum"] = minimum
    return schema


def _str(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _obj(description: str, properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def _map(description: str, values: Schema, keys: Schema | None = None) -> Schema:
    schema: Schema = {"type": "object", "description": description, "additionalProperties": values}
    if keys is not None:
        schema["propertyNames"] = keys
    return schema


UPSTREAM = _obj(
    "One upstream API endpoint.",
    {
        "base_url": _str("Base URL ending before the endpoint path, e.g. https://api.together.xyz/v1.", pattern="^https?://"),
        "base_url_env": _str("Environment variable that, when set, overrides base_url."),
        "api_key_env": _str("Environment variable holding the key; while it is unset this upstream's models are skipped (unless the caller brings its own key)."),
        "api": _str("The provider API it speaks.", enum=list(UPSTREAM_APIS), default="openai"),
        "responses_api": {"type": "boolean", "default": False, "description": "An OpenAI-compatible upstream that serves POST /responses itself: /v1/responses is passed through to it, not bridged through chat completions."},
        "video_content": _str("Video job APIs: stream the content, or redirect to a signed URL.", enum=["stream", "redirect"], default="stream"),
        "connect_timeout_s": _num("Seconds to connect (default 5).", 0.001),
        "first_byte_timeout_s": _num("Seconds until the status / first chunk, else retry or fall back (default 30).", 0.001),
        "idle_timeout_s": _num("Longest gap between stream chunks, in seconds (default 60).", 0.001),
    },
    ("base_url",),
)  # fmt: skip
PRICE = _obj(
    "Prices in USD.",
    {
        "input": _num("Per 1M input tokens.", 0),
        "output": _num("Per 1M output tokens.", 0),
        "per_image": _num("Per generated image.", 0),
        "per_minute": _num("Per audio minute.", 0),
        "per_second": _num("Per second of generated video.", 0),
    },
)
MODEL = _obj(
    "A concrete model the gateway may route to.",
    {
        "upstream": _str("Name of an upstream under `upstreams`."),
        "model": _str("The id sent upstream as `model`."),
        "modality": _str("What it does; decides the quota capability when requested by name.", enum=list(MODALITIES)),
        "context_length": _num("Context window in tokens.", 1, integer=True),
        "price": PRICE,
        "reasoning": {"type": "boolean", "default": False, "description": "A reasoning model behind an OpenAI-compatible upstream: it takes chat's `reasoning_effort` (the Responses bridge carries `reasoning.effort` to it)."},
        "deployments": {
            "type": "array",
            "description": "More deployments of this model (its own upstream is the first): the least loaded is tried first, each behind its own breaker, a failed one retried on a sibling.",
            "items": _obj(
                "One more deployment of the model.",
                {
                    "upstream": _str("Name of an upstream under `upstreams` (its base URL, region and key)."),
                    "model": _str("The id sent to that upstream (default: the model's `model`)."),
                    "name": _str("Its label in records, headers and metrics (default: the upstream's name)."),
                },
                ("upstream",),
            ),
        },
    },
    ("upstream", "model", "modality"),
)  # fmt: skip
RETRY = _obj(
    "Retries on the same model before moving down the chain.",
    {
        "attempts": _num("Tries per model, the first included (default 2).", 1, integer=True),
        "backoff_s": _num("First backoff in seconds, doubled each time, with full jitter (default 0.25).", 0),
        "max_backoff_s": _num("Backoff cap in seconds (default 4).", 0),
        "max_retry_after_s": _num("An upstream retry-after longer than this moves to the next model (default 10).", 0),
        "on_status": {"type": "array", "items": {"type": "integer", "minimum": 100}, "description": "Statuses retried (default 408, 429, 500, 502, 503, 504)."},
        "deadline_s": _num("Seconds from the first attempt until an answer has started, across all retries and fallbacks; then 504 (default 30).", 0.001),
    },
)  # fmt: skip
BREAKER = _obj(
    "Circuit breaker per upstream model.",
    {
        "failures": _num("Failures within window_s that open the circuit (default 5).", 1, integer=True),
        "window_s": _num("Window for counting failures, seconds (default 30).", 0.001),
        "cooldown_s": _num("Open time before one probe is let through (default 15).", 0.001),
        "probe_timeout_s": _num("A probe with no verdict by then is taken as lost (default 120).", 0.001),
    },
)  # fmt: skip
ROUTES: Schema = _obj(
    "routes.yaml: upstreams and the concrete models the gateway may route to.",
    {
        "upstreams": _map("Upstream name → its endpoint.", UPSTREAM),
        "models": _map("Model name (used in tiers.yaml and by clients) → the model.", MODEL),
        "passthrough": _map(
            "POST paths below /v1 forwarded as they are (`*` matches one segment) → the routes whose models may serve them.",
            {"type": "array", "items": {"type": "string", "enum": list(MODALITIES)}},
            {"pattern": "^/"},
        ),
        "retry": RETRY,
        "circuit_breaker": BREAKER,
    },
    ("upstreams", "models"),
)  # fmt: skip

QUOTA = _obj(
    "Limits for one capability per user per UTC day; absent means unlimited.",
    {
        "requests_per_day": _num("Requests per day.", 0, integer=True),
        "tokens_per_day": _num("Tokens (input + output) per day.", 0, integer=True),
        "tokens_per_request": _num("Tokens one request may reserve; also clamps max_tokens.", 1, integer=True),
        "minutes_per_day": _num("Audio minutes per day.", 0),
    },
)  # fmt: skip
QUOTAS = _obj(
    f"Capability ({', '.join(CAPABILITIES)}) → quota.",
    {capability: QUOTA for capability in CAPABILITIES},
)
BUDGET = _obj(
    "Spending limits in USD.",
    {"usd_per_day": _num("USD per UTC day.", 0), "usd_per_month": _num("USD per UTC month.", 0)},
)
CACHE_POLICY = _obj(
    "One route's response cache.",
    {
        "ttl_s": _num("Seconds an answer is served from the cache (0: only when a request asks with x-gateway-cache: ttl=N); a request may ask for less, never more.", 0, integer=True),
        "allow": {"type": "boolean", "description": "false: requests may not ask for caching either (default true)."},
        "shared": {"type": "boolean", "description": "One entry for every user of the tier; else per user (default false)."},
        "coalesce": {"type": "boolean", "description": "Concurrent identical misses go upstream once (default true)."},
        "fallback": {"type": "boolean", "description": "Keep each answer to stand in when every target fails (x-gateway-fallback: cache), even without ttl_s; no fresh hits then (default false)."},
    },
)  # fmt: skip
CACHE = _obj(
    "The response cache's limits.",
    {
        "stale_s": _num("Seconds past its TTL an entry may still answer when every target failed (default 86400).", 0, integer=True),
        "max_entry_kb": _num("Answers larger than this are not cached (default 1024).", 1, integer=True),
        "max_ttl_s": _num("The longest TTL a request may ask for (default 86400).", 1, integer=True),
    },
)  # fmt: skip
CHAIN_ENTRY = _obj(
    "A chain entry with a rollout weight.",
    {
        "model": _str("Name of a model under routes.yaml `models`."),
        "weight": _num("Share of the route's users sent to it first (relative to the other weights).", 0),
    },
    ("model",),
)  # fmt: skip
BYOK_MODELS: Schema = {"anyOf": [{"const": "any"}, {"type": "array", "items": {"type": "string", "minLength": 1}}]}  # fmt: skip
TIER = _obj(
    "One tier: its fallback chains, limits, quotas and budgets.",
    {
        "routes": _map(
            "Route name → fallback chain of model names, tried in order; an entry `{model, weight}` takes part in a weighted rollout (sticky per user).",
            {"type": "array", "items": {"anyOf": [{"type": "string"}, CHAIN_ENTRY]}, "minItems": 1},
            {"enum": list(MODALITIES)},
        ),
        "on_exhausted": _str("When the budget refuses the first model: `downgrade` to a cheaper model of the chain, or `reject` (429).", enum=["reject", "downgrade"], default="reject"),
        "max_tokens": _num("Clamp on max_tokens / max_completion_tokens for every route.", 1, integer=True),
        "unsupported_fields": _str("What the Responses and Messages bridges do with a field they cannot carry: `refuse` (400 naming it) or `drop` it, naming it in the x-gateway-dropped-fields header.", enum=["refuse", "drop"], default="refuse"),
        "batch_concurrency": _num("Batch lines of the tier's users in flight at once on each replica, all batches together (default: only the replica-wide and per-user limits).", 1, integer=True),
        "batch_price_percent": _num("A batch's requests (/v1/batches) cost this percent of the list price (default 100).", 0, integer=True),
        "monthly_fee_usd": _num("Fee in USD on each user's monthly statement, for every month with usage.", 0) | {"default": 0},
        "byok_discount_percent": _num("Percent taken off a user's month (fee plus charged usage) when the user used their own provider key (stored or sent) that month.", 0) | {"maximum": 100, "default": 0},
        "quotas": QUOTAS,
        "budget": BUDGET | {"description": "Budget of each user of the tier."},
        "tier_budget": BUDGET | {"description": "Budget of the whole tier together."},
        "cache": _map("Route name → its exact response cache (routes not listed: cached only when a request asks).", CACHE_POLICY, {"enum": list(MODALITIES)}),
        "byok_models": {"description": "Models a caller with an own upstream key may name beyond the routes (passed through, metered as BYOK): `any` or a list of model ids of the tier's primary provider (its first route's first model's upstream), or upstream name → `any` or a list.", "anyOf": [BYOK_MODELS, _map("Upstream name → `any` or a list of model ids.", BYOK_MODELS)]},
    },
    ("routes",),
)  # fmt: skip
KEY = _obj(
    "A client key, stored as its sha256 only.",
    {
        "user": _str("User id the key belongs to."),
        "tier": _str("Name of a tier."),
        "key_sha256": _str("sha256 hex of the key: printf %s \"$KEY\" | sha256sum.", pattern="^[0-9a-fA-F]{64}$"),
    },
    ("user", "tier", "key_sha256"),
)  # fmt: skip
USER = _obj(
    "Per-user overrides.",
    {"quotas": QUOTAS, "budget": BUDGET | {"description": "This user's budget."}},
)
ALERTS = _obj(
    "Cost alerts.",
    {
        "webhook_url": {"type": ["string", "null"], "description": "POSTed JSON when a threshold is crossed (once per window)."},
        "thresholds": {
            "type": "array",
            "description": "Thresholds, per scope.",
            "items": _obj(
                "One threshold.",
                {
                    "scope": _str("`overall` or `tier:<name>`.", pattern="^(overall|tier:.+)$"),
                    "usd_per_day": _num("USD per day.", 0),
                    "usd_per_month": _num("USD per month.", 0),
                },
                ("scope",),
            ),
        },
    },
)  # fmt: skip
SETTINGS = _obj(
    "Process-wide settings.",
    {
        "max_body_mb": _num("Requests above this get 413 (default 32).", 0.001),
        "model_source_indicator": {"type": "boolean", "description": "Put `model_source_indicator` into JSON answers and the first chunk of each stream while the flag together_ai_ui_indicators is on (default true)."},
        "on_store_error": _str("Redis down: allow (serve, buffer usage) or deny (503).", enum=["allow", "deny"], default="allow"),
        "readiness": _str("strict: /readyz is 503 while a tier has a route no target can serve; lenient: it is not.", enum=["strict", "lenient"], default="strict"),
        "usage_stream_maxlen": _num("Usage records kept in the Redis stream (default 1000000).", 1, integer=True),
        "usage_buffer_max": _num("Records held in memory while Redis is unreachable (default 100000).", 1, integer=True),
        "shutdown_grace_s": _num("On SIGTERM, in-flight streams get this long to finish (default 30).", 0),
        "reservation_lease_s": _num("A reservation not settled by then is given back (default 900).", 10, integer=True),
        "tier_budget_shards": _num("Counters a tier's shared budget is split over, each holding a slice of the limit: on a Redis Cluster no single hot key (default 1: exact; docs/scaling.md).", 1, integer=True),
        "max_upstream_body_mb": _num("Cap on an upstream answer read whole (default 64).", 0.001),
        "max_sse_event_kb": _num("Cap on one upstream SSE event (default 4096).", 0.001),
        "max_upstream_header_kb": _num("Cap on an upstream's response head (default 64).", 0.001),
        "max_upstream_headers": _num("Cap on an upstream's header count (default 100).", 1, integer=True),
        "responses_ttl_days": _num("Stored Responses API answers are kept this long (default 30).", 0.001),
        "video_content_hosts": {"type": "array", "items": {"type": "string"}, "description": "Hosts a video upstream's file URL may name (`*.domain` for its subdomains); empty or unset: any public host."},
        "video_content_allow_insecure": {"type": "boolean", "description": "Also fetch video file URLs over http and on private, loopback or link-local addresses: for a local mock upstream only (default false)."},
        "max_open_video_jobs": _num("Video jobs a user may have running at once; more get 429 (default 20).", 1, integer=True),
    },
)  # fmt: skip
FLAG = _obj(
    "A feature flag's default (run-time values set through /v1/admin/flags override it; `name: true` is short for `{enabled: true}`).",
    {
        "enabled": {"type": "boolean", "description": "On or off by default."},
        "rollout_percent": _num("Share of users it is on for, sticky per user (default 100).", 0),
        "description": _str("What the flag switches."),
    },
    ("enabled",),
)  # fmt: skip
LEDGER = _obj(
    "The usage ledger in PostgreSQL (docs/ledger.md; on only when the env sets DATABASE_URL). Each key is overridden by its GATEWAY_LEDGER_<KEY> variable; read at start (a change needs a restart).",
    {
        "auto_migrate": {"type": "boolean", "description": "Apply pending migrations when a shipper starts; false: only `gateway db upgrade` does (default true)."},
        "ship": {"type": "boolean", "description": "Run a shipper in the gateway (one worker of `--workers N`); false: this process only reads the ledger (run `gateway ledger ship` elsewhere) (default true)."},
        "retention_days": _num("Day partitions of usage_records older than this are dropped; 0 keeps all (default 400).", 0, integer=True),
        "rollup_retention_days": _num("Rollup rows (usage_daily*, usage_hourly_models) older than this are deleted, never before retention_days; 0 keeps all (default 800).", 0, integer=True),
        "batch": _num("Stream entries per insert (default 1000).", 1, integer=True),
        "claim_idle_ms": _num("An entry unacknowledged this long was read by a dead consumer: another claims it (default 30000).", 100, integer=True),
        "linger_ms": _num("After a batch smaller than `batch`, the shipper waits this long before reading again, so one insert gathers the records of that time (fewer, larger statements: less CPU in the shipper and PostgreSQL); a record reaches the ledger up to this much later; 0: read again at once (default 200).", 0, integer=True),
        "stream_cap": _num("The usage stream's hard cap while the ledger is on (default 10000000).", 1, integer=True),
    },
)  # fmt: skip
TIERS: Schema = _obj(
    "tiers.yaml: tiers, keys, per-user overrides, alerts and settings.",
    {
        "tiers": _map("Tier name → tier.", TIER),
        "keys": {"type": "array", "items": KEY, "description": "Client keys (sha256 only)."},
        "users": _map("User id → overrides.", USER),
        "alerts": ALERTS,
        "settings": SETTINGS,
        "flags": _map("Flag name → its default (the plan's together_ai_* flags are known, and on, without being declared; docs/control-plane.md).", FLAG),
        "cache": CACHE,
        "ledger": LEDGER,
    },
    ("tiers",),
)  # fmt: skip


def config_schema() -> dict[str, Schema]:
    """Both schemas, keyed by file name (each a complete JSON Schema document)."""
    return {
        name: {"$schema": DRAFT, "$id": f"llm-gateway/{name}", "title": name, **schema}
        for name, schema in (("routes.yaml", ROUTES), ("tiers.yaml", TIERS))
    }


def reference_rows(schema: Schema, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key path, type and default, description) for every key, depth first."""
    rows: list[tuple[str, str, str]] = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        rows.append((path, _type(sub), sub.get("description", "")))
        rows += _nested(sub, path)
    return rows


def _nested(sub: Schema, path: str) -> list[tuple[str, str, str]]:
    if sub is QUOTAS:  # the same keys under every capability: listed once
        return reference_rows(QUOTA, f"{path}.<capability>.")
    if "properties" in sub:
        return reference_rows(sub, path + ".")
    values = sub.get("additionalProperties")
    if isinstance(values, dict) and "properties" in values:
        return reference_rows(values, f"{path}.<name>.")
    items = sub.get("items")
    if isinstance(items, dict) and "properties" in items:
        return reference_rows(items, f"{path}[].")
    return []


def _type(schema: Schema) -> str:
    kind = schema.get("type", "")
    text = "/".join(kind) if isinstance(kind, list) else str(kind)
    if "enum" in schema:
        text = " \\| ".join(f"`{value}`" for value in schema["enum"])
    if "default" in schema:
        text += f" (default `{schema['default']}`)"
    return text


def reference_markdown() -> str:
    """The tables of docs/configuration.md, one per file."""
    parts = []
    for name, schema in config_schema().items():
        parts.append(f"### {name}\n\n| key | type | meaning |\n|---|---|---|")
        parts += [f"| `{path}` | {kind} | {text} |" for path, kind, text in reference_rows(schema)]
        parts.append("")
    return "\n".join(parts)
