"""The caller's limits, usage and what remains, for ``GET /v1/quota`` (pure).

Per limit: ``used`` is what settled requests consumed; ``reserved`` is what requests still in
flight hold (their leases); ``remaining`` is ``limit - used - reserved``, what a new request
may reserve now. The stored counters hold both, so ``used`` is the counter minus what the
user's leases hold. A ``limit`` of None is unlimited (and ``remaining`` is then None too).

A team key's organization and team (``levels``) show each limit they have, per window of the
organization's time zone: a level's counters are shared by all its keys, so ``used`` there
includes what every request in flight at that level holds (``reserved`` is 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.config.model import CAPABILITIES, CAPABILITY_BY_MODALITY, Config, Tier
from gateway.metering import level_limits, tier_shards
from gateway.metering.limits import (
    apply_budget_overrides,
    apply_overrides,
    budget_limits,
    quota_limits,
    user_budget,
    user_quota,
)
from gateway.metering.pricing import MS_PER_MINUTE, micros_to_usd
from gateway.metering.types import LevelLimits
from gateway.metering.windows import Windows, iso_utc
from gateway.metering.zoned_windows import zoned
from gateway.store import keys
from gateway.store.port import UNLIMITED


def view_keys(user: str, tier: Tier, windows: Windows, shards: int = 1) -> list[str]:
    """The hashes ``build_view`` needs, in its order (every shard of the tier budget)."""
    return [
        keys.user_day(user, windows.day),
        keys.user_month(user, windows.month),
        keys.user_overrides(user),
        *tier_shards.all_day_keys(tier.name, windows.day, shards),
        *tier_shards.all_month_keys(tier.name, windows.month, shards),
        keys.spend("d", windows.day),
        keys.spend("m", windows.month),
    ]


def build_view(
    config: Config,
    user: str,
    tier: Tier,
    hashes: list[dict[str, int]],
    windows: Windows,
    reserved: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``reserved``: what the user's leases hold, ``key\tfield`` → amount
    (``Store.read_reservations``)."""
    day, month, stored, *tier_parts, spend_day, spend_month = hashes
    shards = len(tier_parts) // 2
    tier_day, tier_month = _summed(tier_parts[:shards]), _summed(tier_parts[shards:])
    held = reserved or {}
    day_key, month_key = keys.user_day(user, windows.day), keys.user_month(user, windows.month)

    def in_flight(key: str, field: str) -> int:
        return held.get(f"{key}\t{field}", 0)

    capabilities = {}
    for capability in _capabilities(config, user, tier, stored):
        limits = apply_overrides(
            quota_limits(user_quota(config, user, tier, capability)), capability, stored
        )

        def line(limit: int, unit: str, cap: str = capability) -> dict[str, int | None]:
            field = keys.capability_field(cap, unit)
            return _line(limit, day.get(field, 0), in_flight(day_key, field))

        audio = line(limits.audio_ms, keys.AUDIO_MS)
        capabilities[capability] = {
            "requests": line(limits.requests, keys.REQUESTS),
            "tokens": line(limits.tokens, keys.TOKENS),
            "tokens_per_request": _limit(limits.tokens_per_request),
            "audio_minutes": {k: _minutes(v) for k, v in audio.items()},
        }
    user_limits = apply_budget_overrides(budget_limits(user_budget(config, user, tier)), stored)
    tier_limits = budget_limits(tier.tier_budget)
    scope = f"tier:{tier.name}"
    return {
        "object": "quota",
        "user": user,
        "tier": tier.name,
        "resets_at": {"day": iso_utc(windows.day_reset), "month": iso_utc(windows.month_reset)},
        "capabilities": capabilities,
        "budgets": {
            "user": {
                "day": _usd(user_limits.day, day.get(keys.USD, 0), in_flight(day_key, keys.USD)),
                "month": _usd(
                    user_limits.month, month.get(keys.USD, 0), in_flight(month_key, keys.USD)
                ),
            },
            "tier": {
                "day": _usd(
                    tier_limits.day, _tier_used(tier_limits.day, tier_day, spend_day, scope)
                ),
                "month": _usd(
                    tier_limits.month, _tier_used(tier_limits.month, tier_month, spend_month, scope)
                ),
            },
        },
    }


def level_view_keys(levels: Sequence[LevelLimits], now: float) -> list[str]:
    """The hashes ``build_level_view`` needs, in its order: per level, each window's and the
    in-flight count's."""
    found = []
    for limits in levels:
        found += [
            level_limits.window_key(limits.level, limits.id, w) for w in zoned(limits.timezone, now)
        ]
        found.append(f"{level_limits.base(limits.level, limits.id)}:par")
    return found


def build_level_view(
    levels: Sequence[LevelLimits], now: float, hashes: Sequence[Mapping[str, int]]
) -> list[dict[str, Any]]:
    """Per level: its limits in each window that has any, with what is used and left."""
    shown = []
    position = 0
    for limits in levels:
        windows: dict[str, Any] = {}
        for window in zoned(limits.timezone, now):
            counted = hashes[position]
            position += 1
            lines: dict[str, Any] = {}
            for measure in level_limits.MEASURES:
                limit = getattr(getattr(limits, measure), window.name)
                if limit == UNLIMITED:
                    continue
                used = counted.get(level_limits.FIELDS[measure], 0)
                lines[measure] = _usd(limit, used) if measure == "usd" else _line(limit, used)
            if lines:
                windows[window.name] = {**lines, "resets_at": iso_utc(window.reset)}
        in_flight = hashes[position].get("n", 0)
        position += 1
        shown.append(
            {
                "level": limits.level,
                "id": limits.id,
                "timezone": limits.timezone,
                "windows": windows,
                "in_flight": _line(limits.max_parallel, in_flight)
                if limits.max_parallel != UNLIMITED
                else None,
            }
        )
    return shown


def _capabilities(config: Config, user: str, tier: Tier, stored: Mapping[str, int]) -> list[str]:
    """Those the tier routes or any quota names, in the canonical order."""
    named = {CAPABILITY_BY_MODALITY[route] for route in tier.routes}
    named |= set(tier.quotas)
    override = config.users.get(user)
    named |= set(override.quotas) if override else set()
    named |= {field.rpartition(":")[0] for field in stored}
    return [capability for capability in CAPABILITIES if capability in named]


def _tier_used(
    limit: int, counters: Mapping[str, int], spend: Mapping[str, int], scope: str
) -> int:
    """The tier's budget counter when it has a budget (kept only then), else its spend."""
    return counters.get(keys.USD, 0) if limit != UNLIMITED else spend.get(scope, 0)


def _summed(parts: list[dict[str, int]]) -> dict[str, int]:
    return {keys.USD: sum(part.get(keys.USD, 0) for part in parts)} if parts else {}


def _limit(value: int) -> int | None:
    return None if value == UNLIMITED else value


def _line(limit: int, counted: int, reserved: int = 0) -> dict[str, int | None]:
    """``counted`` is the stored counter: settled use plus what is reserved in flight."""
    bounded = limit != UNLIMITED
    reserved = max(0, min(reserved, counted))
    return {
        "limit": limit if bounded else None,
        "used": counted - reserved,
        "reserved": reserved,
        "remaining": max(0, limit - counted) if bounded else None,
    }


def _minutes(value: int | None) -> float | None:
    return None if value is None else round(value / MS_PER_MINUTE, 3)


def _usd(limit: int, counted: int, reserved: int = 0) -> dict[str, float | None]:
    bounded = limit != UNLIMITED
    reserved = max(0, min(reserved, counted))
    return {
        "limit_usd": micros_to_usd(limit) if bounded else None,
        "used_usd": micros_to_usd(counted - reserved),
        "reserved_usd": micros_to_usd(reserved),
        "remaining_usd": micros_to_usd(max(0, limit - counted)) if bounded else None,
    }
