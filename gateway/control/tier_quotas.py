"""Tier quotas set at run time: kind ``tier_quotas``, one document per (tier, capability).

A document ``{tier, capability, quota: {requests_per_day, tokens_per_day, tokens_per_request,
minutes_per_day}, updated_at}`` replaces the tier's tiers.yaml quota for that capability whole:
a field left out, null or -1 is unlimited (``{}`` makes the capability unlimited for the
tier). Deleting it brings the tiers.yaml quota back. Per-user overrides still go on top. The
meter holds the mapping in memory (``Meter.set_tier_quotas``), so admitting a request reads
no extra key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.config.model import CAPABILITIES, Config, Quota
from gateway.control.plane import Snapshot
from gateway.errors import InvalidRequest, NotFound

KIND = "tier_quotas"
UNLIMITED = -1
# field → (whole numbers only, the largest value)
FIELDS: dict[str, tuple[bool, float]] = {
    "requests_per_day": (True, 10**12),
    "tokens_per_day": (True, 10**12),
    "tokens_per_request": (True, 10**12),
    "minutes_per_day": (False, 10**7),
}
TierQuotas = Mapping[tuple[str, str], Quota]


def document_id(tier: str, capability: str) -> str:
    return f"{tier}/{capability}"


def check_target(config: Config, tier: str, capability: str) -> None:
    if tier not in config.tiers:
        raise NotFound(f"Unknown tier '{tier}'.", param="tier")
    if capability not in CAPABILITIES:
        raise NotFound(
            f"Unknown capability '{capability}' (known: {', '.join(CAPABILITIES)}).",
            param="capability",
        )


def quota_fields(body: Any) -> dict[str, int | float | None]:
    """A PUT body checked: each field a number from 0 to its cap, or null / -1 (unlimited)."""
    if not isinstance(body, dict) or not set(body) <= set(FIELDS):
        raise InvalidRequest(f"Expected a JSON object with keys from: {', '.join(FIELDS)}.")
    fields: dict[str, int | float | None] = {}
    for name, value in body.items():
        whole, most = FIELDS[name]
        allowed = int if whole else int | float
        if value is None or (value == UNLIMITED and not isinstance(value, bool)):
            fields[name] = None
        elif isinstance(value, bool) or not isinstance(value, allowed) or not 0 <= value <= most:
            what = "a whole number" if whole else "a number"
            raise InvalidRequest(
                f"'{name}' must be {what} from 0 to {most:.0e}, or null / -1 for unlimited.",
                param=name,
            )
        else:
            fields[name] = value
    return fields


def tier_quotas(snapshot: Snapshot) -> dict[tuple[str, str], Quota]:
    """Every run-time tier quota in the snapshot (malformed documents skipped)."""
    found: dict[tuple[str, str], Quota] = {}
    for document in snapshot.kind(KIND).values():
        tier, capability, quota = (document.get(k) for k in ("tier", "capability", "quota"))
        if isinstance(tier, str) and capability in CAPABILITIES and isinstance(quota, dict):
            try:
                found[(tier, str(capability))] = Quota(**quota_fields(quota))  # type: ignore[arg-type]
            except InvalidRequest:
                continue
    return found


def quota_state(config: Config, snapshot: Snapshot, tier: str, capability: str) -> dict[str, Any]:
    """What the admin API shows: the quota in force, where it comes from, and the base."""
    base = config.tiers[tier].quota(capability)
    document = snapshot.kind(KIND).get(document_id(tier, capability))
    state: dict[str, Any] = {"tier": tier, "capability": capability}
    if document is None:
        state.update(source="tiers.yaml", quota=_plain(base))
    else:
        quota = Quota(**quota_fields(document["quota"]))  # type: ignore[arg-type]
        state.update(source="runtime", quota=_plain(quota))
        state["updated_at"] = document.get("updated_at")
    state["tiers_yaml"] = _plain(base)
    return state


def _plain(quota: Quota) -> dict[str, int | float | None]:
    """null is unlimited."""
    return {name: getattr(quota, name) for name in FIELDS}


class TierQuotaFollower:
    """Hands the meter the run-time tier quotas whenever they change (a snapshot callback)."""

    def __init__(self, apply: Callable[[TierQuotas], None]) -> None:
        self._apply = apply
        self._last: dict[tuple[str, str], Quota] = {}

    def __call__(self, snapshot: Snapshot) -> None:
        quotas = tier_quotas(snapshot)
        if quotas != self._last:
            self._last = quotas
            self._apply(quotas)
