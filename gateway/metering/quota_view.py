"""The caller's limits, usage and what remains, for ``GET /v1/quota`` (pure).

``used`` includes reservations of requests still in flight. A ``limit`` of None is
unlimited (and ``remaining`` is then None too).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.config.model import CAPABILITIES, CAPABILITY_BY_MODALITY, Config, Tier
from gateway.metering import keys
from gateway.metering.limits import (
    apply_budget_overrides,
    apply_overrides,
    budget_limits,
    quota_limits,
    user_budget,
    user_quota,
)
from gateway.metering.pricing import MS_PER_MINUTE, micros_to_usd
from gateway.metering.store import UNLIMITED
from gateway.metering.windows import Windows, iso_utc


def view_keys(user: str, tier: Tier, windows: Windows) -> list[str]:
    """The hashes ``build_view`` needs, in its order."""
    return [
        keys.user_day(user, windows.day),
        keys.user_month(user, windows.month),
        keys.user_overrides(user),
        keys.tier_day(tier.name, windows.day),
        keys.tier_month(tier.name, windows.month),
        keys.spend("d", windows.day),
        keys.spend("m", windows.month),
    ]


def build_view(
    config: Config, user: str, tier: Tier, hashes: list[dict[str, int]], windows: Windows
) -> dict[str, Any]:
    day, month, stored, tier_day, tier_month, spend_day, spend_month = hashes
    capabilities = {}
    for capability in _capabilities(config, user, tier, stored):
        limits = apply_overrides(
            quota_limits(user_quota(config, user, tier, capability)), capability, stored
        )

        def used(unit: str, cap: str = capability) -> int:
            return day.get(keys.capability_field(cap, unit), 0)

        audio = _line(limits.audio_ms, used(keys.AUDIO_MS))
        capabilities[capability] = {
            "requests": _line(limits.requests, used(keys.REQUESTS)),
            "tokens": _line(limits.tokens, used(keys.TOKENS)),
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
                "day": _usd(user_limits.day, day.get(keys.USD, 0)),
                "month": _usd(user_limits.month, month.get(keys.USD, 0)),
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


def _limit(value: int) -> int | None:
    return None if value == UNLIMITED else value


def _line(limit: int, used: int) -> dict[str, int | None]:
    bounded = limit != UNLIMITED
    return {
        "limit": limit if bounded else None,
        "used": used,
        "remaining": max(0, limit - used) if bounded else None,
    }


def _minutes(value: int | None) -> float | None:
    return None if value is None else round(value / MS_PER_MINUTE, 3)


def _usd(limit: int, used: int) -> dict[str, float | None]:
    bounded = limit != UNLIMITED
    return {
        "limit_usd": micros_to_usd(limit) if bounded else None,
        "used_usd": micros_to_usd(used),
        "remaining_usd": micros_to_usd(max(0, limit - used)) if bounded else None,
    }
