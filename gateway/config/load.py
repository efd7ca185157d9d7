"""routes.yaml + tiers.yaml (+ env) → a validated ``Config``. Every problem names file and key."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gateway.config.byok_section import byok_models
from gateway.config.cache_section import cache_policies, cache_settings
from gateway.config.chains import ON_EXHAUSTED, chain_entry, deployments
from gateway.config.flags_section import flags_section
from gateway.config.key_env import key_variable
from gateway.config.ledger_section import ledger_section
from gateway.config.model import (
    CAPABILITIES,
    MODALITIES,
    UPSTREAM_APIS,
    AlertRule,
    Alerts,
    BreakerPolicy,
    Budget,
    ClientKey,
    Config,
    Model,
    Price,
    Quota,
    RetryPolicy,
    Tier,
    Upstream,
    UserOverride,
    build_lookup,
)
from gateway.config.reader import ConfigError, Node
from gateway.config.sections import passthrough_section, settings_section
from gateway.secret import Secret, sha256_hex

T = TypeVar("T")

ROUTES_FILE = "routes.yaml"
TIERS_FILE = "tiers.yaml"


def load_config(config_dir: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read both files from ``config_dir``; raise ``ConfigError`` listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []
    routes = _read_yaml(Path(config_dir) / ROUTES_FILE, problems)
    tiers = _read_yaml(Path(config_dir) / TIERS_FILE, problems)
    if problems:
        raise ConfigError(problems)
    config = parse_config(routes, tiers, env, problems)
    if problems:
        raise ConfigError(problems)
    return config


def parse_config(
    routes_doc: Any, tiers_doc: Any, env: Mapping[str, str], problems: list[str]
) -> Config:
    routes = Node(ROUTES_FILE, "", routes_doc, problems)
    tiers = Node(TIERS_FILE, "", tiers_doc, problems)
    routes.mapping(
        {"upstreams", "models", "retry", "circuit_breaker", "passthrough"}, {"upstreams", "models"}
    )
    tiers.mapping(
        {"tiers", "keys", "users", "alerts", "settings", "flags", "cache", "ledger"}, {"tiers"}
    )
    upstreams = {name: _upstream(name, node, env) for name, node in routes.get("upstreams").items()}
    models = _models(routes.get("models"), upstreams)
    tier_map = {
        name: _tier(name, node, models, upstreams) for name, node in tiers.get("tiers").items()
    }
    if not tier_map:
        tiers.get("tiers").fail("at least one tier is required")
    return Config(
        upstreams=upstreams,
        models=models,
        tiers=tier_map,
        keys=_keys(tiers.get("keys"), tier_map, env),
        retry=_retry(routes.get("retry")),
        breaker=_breaker(routes.get("circuit_breaker")),
        users=_users(tiers.get("users")),
        alerts=_alerts(tiers.get("alerts"), tier_map),
        settings=settings_section(tiers.get("settings")),
        known_models=frozenset(models) | {m.upstream_model for m in models.values()},
        known_routes=frozenset(route for tier in tier_map.values() for route in tier.routes),
        passthrough=passthrough_section(routes.get("passthrough")),
        flags=flags_section(tiers.get("flags")),
        cache=cache_settings(tiers.get("cache")),
        ledger=ledger_section(tiers.get("ledger")),
    )


def _read_yaml(path: Path, problems: list[str]) -> Any:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        problems.append(f"{path.name}: file not found in {path.parent}")
    except yaml.YAMLError as exc:
        problems.append(f"{path.name}: invalid YAML: {exc}")
    return None


def _upstream(name: str, node: Node, env: Mapping[str, str]) -> Upstream:
    node.mapping(
        {
            "base_url",
            "base_url_env",
            "api_key_env",
            "connect_timeout_s",
            "first_byte_timeout_s",
            "idle_timeout_s",
            "api",
            "video_content",
            "responses_api",
        },
        {"base_url"},
    )
    base_url = node.get("base_url").string("") or ""
    override_var = node.get("base_url_env").string()
    if override_var and env.get(override_var):
        base_url = env[override_var]
        if not base_url.startswith(("http://", "https://")):
            node.get("base_url_env").fail(
                f"{override_var} must start with http:// or https://, got {base_url!r}"
            )
    elif base_url and not base_url.startswith(("http://", "https://")):
        node.get("base_url").fail(f"must start with http:// or https://, got {base_url!r}")
    key_var = node.get("api_key_env").string()
    key_source = key_variable(env, key_var) if key_var else None
    api_key = Secret(env[key_source]) if key_source else None
    defaults = Upstream(name, "", None)
    return Upstream(
        name=name,
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        requires_key=key_var is not None,
        connect_timeout_s=_positive(node.get("connect_timeout_s"), defaults.connect_timeout_s),
        first_byte_timeout_s=_positive(
            node.get("first_byte_timeout_s"), defaults.first_byte_timeout_s
        ),
        idle_timeout_s=_positive(node.get("idle_timeout_s"), defaults.idle_timeout_s),
        api=node.get("api").choice(UPSTREAM_APIS, defaults.api),
        video_content=node.get("video_content").choice(("stream", "redirect"), "stream"),
        api_key_env=key_var,
        api_key_source=key_source,
        base_url_env=override_var,
        responses_api=node.get("responses_api").boolean(False),
    )


def _positive(node: Node, default: float) -> float:
    value = node.number(default, minimum=0.001)
    return default if value is None else value


def _models(node: Node, upstreams: Mapping[str, Upstream]) -> dict[str, Model]:
    models: dict[str, Model] = {}
    for name, entry in node.items():
        entry.mapping(
            {"upstream", "model", "modality", "context_length", "price", "deployments"}
            | {"reasoning"},
            {"upstream", "model", "modality"},
        )
        upstream_name = entry.get("upstream").string("") or ""
        upstream = upstreams.get(upstream_name)
        if upstream is None and upstream_name:
            entry.get("upstream").fail(f"unknown upstream {upstream_name!r}")
        modality = entry.get("modality").choice(MODALITIES, "text")
        if upstream is None:
            continue
        model = Model(
            name=name,
            upstream=upstream,
            upstream_model=entry.get("model").string(name) or name,
            modality=modality,
            context_length=entry.get("context_length").integer(None, minimum=1),
            price=_price(entry.get("price")),
            reasoning=entry.get("reasoning").boolean(False),
        )
        found = deployments(entry.get("deployments"), model, upstreams)
        models[name] = replace(model, deployments=found) if found else model
    return models


def _price(node: Node) -> Price:
    if not node.present():
        return Price()
    node.mapping({"input", "output", "per_image", "per_minute", "per_second"})
    return Price(**{key: node.get(key).number(0.0) or 0.0 for key in Price.__dataclass_fields__})


def _tier(
    name: str, node: Node, models: Mapping[str, Model], upstreams: Mapping[str, Upstream]
) -> Tier:
    node.mapping(
        {"routes", "max_tokens", "quotas", "budget", "tier_budget", "on_exhausted", "cache"}
        | {"batch_price_percent", "byok_models", "monthly_fee_usd", "byok_discount_percent"}
        | {"unsupported_fields", "batch_concurrency"},
        {"routes"},
    )
    routes: dict[str, tuple[Model, ...]] = {}
    weights: dict[str, tuple[float, ...]] = {}
    for route, chain_node in node.get("routes").items():
        if route not in MODALITIES:
            chain_node.fail(f"unknown route name (known: {', '.join(MODALITIES)})")
        entries = [chain_entry(element, models) for element in chain_node.elements()]
        if not entries:
            chain_node.fail("a route needs at least one model")
        routes[route] = tuple(model for model, _ in entries if model is not None)
        if any(weight for _, weight in entries):
            weights[route] = tuple(weight for model, weight in entries if model is not None)
    return Tier(
        name=name,
        routes=routes,
        max_tokens=node.get("max_tokens").integer(None, minimum=1),
        quotas=_quotas(node.get("quotas")),
        user_budget=_budget(node.get("budget")),
        tier_budget=_budget(node.get("tier_budget")),
        lookup=build_lookup(routes),
        cache=cache_policies(node.get("cache")),
        weights=weights,
        on_exhausted=node.get("on_exhausted").choice(ON_EXHAUSTED, "reject"),
        batch_price_percent=node.get("batch_price_percent").integer(100) or 0,
        batch_concurrency=node.get("batch_concurrency").integer(None, minimum=1),
        unsupported_fields=node.get("unsupported_fields").choice(("refuse", "drop"), "refuse"),
        byok_models=byok_models(node.get("byok_models"), routes, upstreams),
        monthly_fee_usd=_money(node.get("monthly_fee_usd")),
        byok_discount_percent=_percent(node.get("byok_discount_percent")),
    )


def _money(node: Node) -> Decimal:
    """An amount in USD as an exact decimal (``9.99`` stays 9.99, not the float's binary)."""
    if not node.number(0.0) or isinstance(node.value, bool):
        return Decimal(0)
    value = node.value
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _percent(node: Node) -> Decimal:
    share = _money(node)
    if share > 100:
        node.fail(f"must be <= 100, got {node.value}")
        return Decimal(0)
    return share


def _quotas(node: Node) -> dict[str, Quota]:
    if not node.present():
        return {}
    node.mapping(set(CAPABILITIES))
    quotas: dict[str, Quota] = {}
    for capability, entry in node.items():
        entry.mapping(set(Quota.__dataclass_fields__))
        quotas[capability] = Quota(
            requests_per_day=entry.get("requests_per_day").integer(None),
            tokens_per_day=entry.get("tokens_per_day").integer(None),
            tokens_per_request=entry.get("tokens_per_request").integer(None, minimum=1),
            minutes_per_day=entry.get("minutes_per_day").number(None),
        )
    return quotas


def _budget(node: Node) -> Budget:
    if not node.present():
        return Budget()
    node.mapping({"usd_per_day", "usd_per_month"})
    return Budget(node.get("usd_per_day").number(None), node.get("usd_per_month").number(None))


def _keys(node: Node, tiers: Mapping[str, Tier], env: Mapping[str, str]) -> tuple[ClientKey, ...]:
    keys: list[ClientKey] = []
    for entry in node.elements() if node.present() else ():
        entry.mapping({"user", "tier", "key_sha256"}, {"user", "tier", "key_sha256"})
        digest = (entry.get("key_sha256").string("") or "").lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            entry.get("key_sha256").fail("expected 64 hex characters (sha256 of the key)")
        tier = _known_tier(entry.get("tier"), tiers)
        keys.append(ClientKey(entry.get("user").string("") or "", tier, digest))
    keys.extend(_env_keys(env.get("GATEWAY_KEYS", ""), tiers, node.problems))
    return tuple(keys)


def _known_tier(node: Node, tiers: Mapping[str, Tier]) -> str:
    tier = node.string("") or ""
    if tier and tier not in tiers:
        node.fail(f"unknown tier {tier!r}")
    return tier


def _env_keys(spec: str, tiers: Mapping[str, Tier], problems: list[str]) -> list[ClientKey]:
    """``GATEWAY_KEYS=key=tier[:user],...``; the raw key is hashed at once and not kept."""
    keys = []
    for index, item in enumerate(filter(None, (part.strip() for part in spec.split(",")))):
        key, equals, rest = item.partition("=")
        tier, _, user = rest.partition(":")
        problem = _env_key_problem(key, equals, tier, tiers)
        if problem:
            problems.append(f"GATEWAY_KEYS: entry {index + 1}: {problem}")
            continue
        digest = sha256_hex(key)
        keys.append(ClientKey(user or f"key-{digest[:8]}", tier, digest))
    return keys


def _env_key_problem(key: str, equals: str, tier: str, tiers: Mapping[str, Tier]) -> str | None:
    """What is wrong with one ``key=tier[:user]`` entry (never echoing the key)."""
    expected = "expected key=tier[:user], e.g. sk-my-dev-key=free:me"
    if not equals:
        return f"no '=' in it; {expected}"
    if not key:
        return f"the key before '=' is empty; {expected}"
    if not tier:
        return f"no tier after '='; {expected}"
    if tier not in tiers:
        return f"unknown tier {tier!r} (known: {', '.join(tiers)})"
    return None


def _retry(node: Node) -> RetryPolicy:
    d = RetryPolicy()
    if not node.present():
        return d
    node.mapping(
        {"attempts", "backoff_s", "max_backoff_s", "max_retry_after_s", "on_status", "deadline_s"}
    )
    statuses = (
        [e.integer(0, minimum=100) or 0 for e in node.get("on_status").elements()]
        if node.get("on_status").present()
        else list(d.on_status)
    )
    return RetryPolicy(
        attempts=node.get("attempts").integer(d.attempts, minimum=1) or d.attempts,
        backoff_s=_or(node.get("backoff_s").number(d.backoff_s), d.backoff_s),
        max_backoff_s=_or(node.get("max_backoff_s").number(d.max_backoff_s), d.max_backoff_s),
        max_retry_after_s=_or(
            node.get("max_retry_after_s").number(d.max_retry_after_s), d.max_retry_after_s
        ),
        on_status=frozenset(statuses),
        deadline_s=_or(node.get("deadline_s").number(d.deadline_s, minimum=0.001), d.deadline_s),
    )


def _breaker(node: Node) -> BreakerPolicy:
    d = BreakerPolicy()
    if not node.present():
        return d
    node.mapping({"failures", "window_s", "cooldown_s", "probe_timeout_s"})
    return BreakerPolicy(
        failures=node.get("failures").integer(d.failures, minimum=1) or d.failures,
        window_s=_positive(node.get("window_s"), d.window_s),
        cooldown_s=_positive(node.get("cooldown_s"), d.cooldown_s),
        probe_timeout_s=_positive(node.get("probe_timeout_s"), d.probe_timeout_s),
    )


def _users(node: Node) -> dict[str, UserOverride]:
    users: dict[str, UserOverride] = {}
    if not node.present():
        return users
    node.mapping()
    for user, entry in node.items():
        entry.mapping({"quotas", "budget"})
        budget = _budget(entry.get("budget")) if entry.get("budget").present() else None
        users[user] = UserOverride(_quotas(entry.get("quotas")), budget)
    return users


def _alerts(node: Node, tiers: Mapping[str, Tier]) -> Alerts:
    if not node.present():
        return Alerts()
    node.mapping({"webhook_url", "thresholds"})
    rules = []
    for entry in node.get("thresholds").elements() if node.get("thresholds").present() else ():
        entry.mapping({"scope", "usd_per_day", "usd_per_month"}, {"scope"})
        scope = entry.get("scope").string("overall") or "overall"
        if scope != "overall" and scope.removeprefix("tier:") not in tiers:
            entry.get("scope").fail(f"expected 'overall' or 'tier:<known tier>', got {scope!r}")
        rules.append(
            AlertRule(
                scope,
                entry.get("usd_per_day").number(None),
                entry.get("usd_per_month").number(None),
            )
        )
    return Alerts(node.get("webhook_url").string(None), tuple(rules))


def _or(value: T | None, default: T) -> T:
    return default if value is None else value
