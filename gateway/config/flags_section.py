"""The ``flags:`` section of tiers.yaml: feature flags and their defaults, read and validated."""

from __future__ import annotations

import re

from gateway.config.model import FlagDefault
from gateway.config.reader import Node

# The product plan's flags: known without being declared, on by default.
PLAN_FLAGS: dict[str, str] = {
    "together_ai_integration": "Master switch: off skips every Together target (chains move on).",
    "together_ai_free_tier": "Off: keys of the free tier get a 403.",
    "together_ai_fallback": "Off: no fallback to another model or provider (the first model only).",
    "together_ai_ui_indicators": "Off: no model-source indicators (x-gateway-provider/model...).",
}
FLAG_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


def flags_section(node: Node) -> dict[str, FlagDefault]:
    """``name: true`` or ``name: {enabled, rollout_percent, description}``; the plan's flags
    are added (on) when not declared."""
    flags = {name: FlagDefault(True, 100.0, text) for name, text in PLAN_FLAGS.items()}
    if not node.present() or not node.mapping():
        return flags
    for name, entry in node.items():
        if not FLAG_NAME.fullmatch(name):
            entry.fail("a flag name is lower case letters, digits and _ (at most 64)")
            continue
        flags[name] = _flag(entry, PLAN_FLAGS.get(name, ""))
    return flags


def _flag(node: Node, description: str) -> FlagDefault:
    if isinstance(node.value, bool):
        return FlagDefault(node.value, 100.0, description)
    node.mapping({"enabled", "rollout_percent", "description"}, {"enabled"})
    percent = node.get("rollout_percent").number(100.0)
    if percent is not None and percent > 100:
        node.get("rollout_percent").fail(f"must be <= 100, got {percent}")
    return FlagDefault(
        node.get("enabled").boolean(True),
        100.0 if percent is None else min(percent, 100.0),
        node.get("description").string(description) or "",
    )
