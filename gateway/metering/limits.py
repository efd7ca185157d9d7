"""Effective limits in integer units: tier, then the config's user override, field by field.

Store overrides (set at run time) go on top inside the store itself (see ``store/rule.py``), so
they cost no extra round trip. An override field left ``None`` inherits the level below; a
capability with no quota entry anywhere is unlimited. Units: requests, tokens, audio
milliseconds, micro-USD; ``UNLIMITED`` (-1) for no limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from gateway.config.model import CAPABILITIES, Budget, Config, Quota, Tier, UserOverride
from gateway.metering.pricing import MICROS_PER_USD, MS_PER_MINUTE, micros_to_usd
from gateway.store import keys
from gateway.store.port import UNLIMITED


@dataclass(frozen=True)
class Limits:
    """One capability's limits for one user."""

    requests: int = UNLIMITED
    tokens: int = UNLIMITED
    tokens_per_request: int = UNLIMITED
    audio_ms: int = UNLIMITED


@dataclass(frozen=True)
class BudgetLimits:
    day: int = UNLIMITED  # micro-USD
    month: int = UNLIMITED


def merge_quota(base: Quota, override: Quota | None) -> Quota:
    if override is None:
        return base
    changes = {
        f.name: getattr(override, f.name)
        for f in fields(Quota)
        if getattr(override, f.name) is not None
    }
    return replace(base, **changes)


def merge_budget(base: Budget, override: Budget | None) -> Budget:
    if override is None:
        return base
    return Budget(
        override.usd_per_day if override.usd_per_day is not None else base.usd_per_day,
        override.usd_per_month if override.usd_per_month is not None else base.usd_per_month,
    )


def user_quota(config: Config, user: str, tier: Tier, capability: str) -> Quota:
    override = config.users.get(user)
    return merge_quota(
        tier.quota(capability), override.quotas.get(capability) if override else None
    )


def user_budget(config: Config, user: str, tier: Tier) -> Budget:
    override = config.users.get(user)
    return merge_budget(tier.user_budget, override.budget if override else None)


def quota_limits(quota: Quota) -> Limits:
    return Limits(
        requests=_units(quota.requests_per_day, 1),
        tokens=_units(quota.tokens_per_day, 1),
        tokens_per_request=_units(quota.tokens_per_request, 1),
        audio_ms=_units(quota.minutes_per_day, MS_PER_MINUTE),
    )


def budget_limits(budget: Budget) -> BudgetLimits:
    return BudgetLimits(
        _units(budget.usd_per_day, MICROS_PER_USD), _units(budget.usd_per_month, MICROS_PER_USD)
    )


def usd_micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def _units(value: float | None, scale: int) -> int:
    return UNLIMITED if value is None else max(0, round(value * scale))


# -- store overrides: Quota / Budget <-> the fields of the override hash ---------------------

QUOTA_FIELDS: Mapping[str, tuple[str, int]] = {
    "requests_per_day": (keys.REQUESTS, 1),
    "tokens_per_day": (keys.TOKENS, 1),
    "tokens_per_request": (keys.TOKENS_PER_REQUEST, 1),
    "minutes_per_day": (keys.AUDIO_MS, MS_PER_MINUTE),
}


def quota_override_fields(capability: str, quota: Quota | None) -> tuple[dict[str, int], list[str]]:
    """The hash fields to set and to delete so the store holds exactly ``quota``."""
    values: dict[str, int] = {}
    for name, (unit, scale) in QUOTA_FIELDS.items():
        value = getattr(quota, name) if quota is not None else None
        if value is not None:
            values[keys.capability_field(capability, unit)] = _units(value, scale)
    drop = [keys.capability_field(capability, unit) for unit, _ in QUOTA_FIELDS.values()]
    return values, [f for f in drop if f not in values]


def budget_override_fields(budget: Budget | None) -> tuple[dict[str, int], list[str]]:
    values: dict[str, int] = {}
    if budget is not None and budget.usd_per_day is not None:
        values[keys.USD_DAY] = usd_micros(budget.usd_per_day)
    if budget is not None and budget.usd_per_month is not None:
        values[keys.USD_MONTH] = usd_micros(budget.usd_per_month)
    return values, [f for f in (keys.USD_DAY, keys.USD_MONTH) if f not in values]


def apply_overrides(limits: Limits, capability: str, stored: Mapping[str, int]) -> Limits:
    def pick(unit: str, default: int) -> int:
        return stored.get(keys.capability_field(capability, unit), default)

    return Limits(
        requests=pick(keys.REQUESTS, limits.requests),
        tokens=pick(keys.TOKENS, limits.tokens),
        tokens_per_request=pick(keys.TOKENS_PER_REQUEST, limits.tokens_per_request),
        audio_ms=pick(keys.AUDIO_MS, limits.audio_ms),
    )


def apply_budget_overrides(limits: BudgetLimits, stored: Mapping[str, int]) -> BudgetLimits:
    return BudgetLimits(
        stored.get(keys.USD_DAY, limits.day), stored.get(keys.USD_MONTH, limits.month)
    )


def override_from_hash(stored: Mapping[str, int]) -> UserOverride:
    """The store's override hash back in config units."""
    quotas: dict[str, Quota] = {}
    for capability in CAPABILITIES:
        req, tok, tpr, ams = (
            stored.get(keys.capability_field(capability, unit))
            for unit in (keys.REQUESTS, keys.TOKENS, keys.TOKENS_PER_REQUEST, keys.AUDIO_MS)
        )
        if (req, tok, tpr, ams) != (None, None, None, None):
            minutes = None if ams is None else ams / MS_PER_MINUTE
            quotas[capability] = Quota(req, tok, tpr, minutes)
    day, month = stored.get(keys.USD_DAY), stored.get(keys.USD_MONTH)
    budget = None
    if day is not None or month is not None:
        budget = Budget(
            None if day is None else micros_to_usd(day),
            None if month is None else micros_to_usd(month),
        )
    return UserOverride(quotas, budget)
