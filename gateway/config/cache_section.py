"""The response cache's config: a tier's ``cache:`` (route → policy) and tiers.yaml ``cache:``."""

from __future__ import annotations

from gateway.config.model import MODALITIES, CachePolicy, CacheSettings, Config
from gateway.config.reader import Node

KIB = 1024


def cache_policies(node: Node) -> dict[str, CachePolicy]:
    """``cache: {text: {ttl_s: 300, shared: true}}`` in a tier: route → its policy."""
    policies: dict[str, CachePolicy] = {}
    if not node.present() or not node.mapping():
        return policies
    d = CachePolicy()
    for route, entry in node.items():
        if route not in MODALITIES:
            entry.fail(f"unknown route name (known: {', '.join(MODALITIES)})")
            continue
        entry.mapping({"ttl_s", "allow", "shared", "coalesce", "fallback"})
        policies[route] = CachePolicy(
            ttl_s=entry.get("ttl_s").integer(d.ttl_s) or 0,
            allow=entry.get("allow").boolean(d.allow),
            shared=entry.get("shared").boolean(d.shared),
            coalesce=entry.get("coalesce").boolean(d.coalesce),
            fallback=entry.get("fallback").boolean(d.fallback),
        )
    return policies


def cache_settings(node: Node) -> CacheSettings:
    """tiers.yaml ``cache: {stale_s, max_entry_kb, max_ttl_s}``."""
    d = CacheSettings()
    if not node.present() or not node.mapping({"stale_s", "max_entry_kb", "max_ttl_s"}):
        return d
    stale = node.get("stale_s").integer(d.stale_s)
    entry_kb = node.get("max_entry_kb").integer(d.max_entry_bytes // KIB, minimum=1)
    max_ttl = node.get("max_ttl_s").integer(d.max_ttl_s, minimum=1)
    return CacheSettings(
        stale_s=d.stale_s if stale is None else stale,
        max_entry_bytes=(entry_kb or 1) * KIB,
        max_ttl_s=max_ttl or d.max_ttl_s,
    )


def fallback_warnings(config: Config) -> list[str]:
    """Each tier none of whose routes keeps answers to stand in for a failed chain."""
    return [
        f"tier {tier.name}: no cached-response fallback (no route with cache fallback: true "
        "or ttl_s): when every upstream fails, its callers get the error"
        for tier in config.tiers.values()
        if not any(p.fallback or p.ttl_s > 0 for p in tier.cache.values())
    ]
