"""Feature flags: tiers.yaml defaults overridden at run time, rolled out sticky per user.

A flag's state is ``{enabled, rollout_percent}``: the run-time document in kind ``flags`` of the
control plane's snapshot when there is one (it replaces the default whole), else the default
declared in tiers.yaml ``flags:`` (the plan's four flags are known, and on, without being
declared). With ``rollout_percent`` below 100 an enabled flag is on for the users whose bucket
(a hash of flag and user, 0 to 100) falls below it: the same user keeps the same answer, and
raising the percentage only adds users.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.config.flags_section import PLAN_FLAGS
from gateway.config.model import Config, FlagDefault
from gateway.control.plane import Snapshot
from gateway.errors import InvalidRequest, NotFound

KIND = "flags"
TOGETHER_INTEGRATION = "together_ai_integration"
TOGETHER_FREE_TIER = "together_ai_free_tier"
TOGETHER_FALLBACK = "together_ai_fallback"
TOGETHER_UI_INDICATORS = "together_ai_ui_indicators"
BUCKETS = 10_000  # rollout granularity: 0.01 %


def flag_enabled(snapshot: Snapshot, config: Config, name: str, user: str) -> bool:
    """Whether flag ``name`` is on for ``user`` (an unknown flag is off)."""
    document = snapshot.kind(KIND).get(name)
    if document is not None:
        enabled, percent = document.get("enabled") is True, document.get("rollout_percent")
    else:
        default = config.flags.get(name)
        if default is None:  # undeclared: the plan's flags are on, any other is off
            return name in PLAN_FLAGS
        enabled, percent = default.enabled, default.rollout_percent
    if not enabled:
        return False
    if percent is None or percent >= 100:
        return True
    return bool(percent > 0 and bucket(name, user) < percent)


def bucket(name: str, user: str) -> float:
    """The user's place in the flag's rollout, 0 <= bucket < 100 (stable across processes)."""
    digest = hashlib.blake2b(f"{name}\0{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS * 100 / BUCKETS


def flag_state(snapshot: Snapshot, config: Config, name: str) -> dict[str, Any]:
    """One flag as the admin API shows it; ``NotFound`` when tiers.yaml does not declare it."""
    default = config.flags.get(name) or _plan_default(name)
    if default is None:
        raise NotFound(f"Unknown flag '{name}' (declare it in tiers.yaml flags:).", param="name")
    document = snapshot.kind(KIND).get(name)
    state: dict[str, Any] = {"name": name, "description": default.description}
    if document is None:
        state.update(enabled=default.enabled, rollout_percent=default.rollout_percent)
        state["source"] = "tiers.yaml"
    else:
        state["enabled"] = document.get("enabled") is True
        state["rollout_percent"] = document.get("rollout_percent", 100.0)
        state["source"] = "runtime"
        state["updated_at"] = document.get("updated_at")
    state["default"] = _plain(default)
    return state


def flag_states(snapshot: Snapshot, config: Config) -> list[dict[str, Any]]:
    return [flag_state(snapshot, config, name) for name in sorted({*config.flags, *PLAN_FLAGS})]


def _plan_default(name: str) -> FlagDefault | None:
    return FlagDefault(True, 100.0, PLAN_FLAGS[name]) if name in PLAN_FLAGS else None


def flag_document(body: Any, now: float) -> dict[str, Any]:
    """A PUT body ``{enabled, rollout_percent?}`` checked, as the document to store."""
    if not isinstance(body, dict) or not set(body) <= {"enabled", "rollout_percent"}:
        raise InvalidRequest("Expected a JSON object {enabled, rollout_percent?}.")
    enabled = body.get("enabled")
    if not isinstance(enabled, bool):
        raise InvalidRequest("'enabled' must be true or false.", param="enabled")
    percent = body.get("rollout_percent", 100)
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not 0 <= percent <= 100:
        raise InvalidRequest(
            "'rollout_percent' must be a number from 0 to 100.", param="rollout_percent"
        )
    return {"enabled": enabled, "rollout_percent": float(percent), "updated_at": now}


def _plain(default: FlagDefault) -> dict[str, Any]:
    return {"enabled": default.enabled, "rollout_percent": default.rollout_percent}
