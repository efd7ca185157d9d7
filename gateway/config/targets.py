"""Which targets of each route can be tried now, and why the others are skipped (pure).

``stored``: the upstreams with stored system keys (the control plane's): they need no env key.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gateway.config.model import Config, Model


@dataclass(frozen=True)
class RouteTargets:
    """One route of one tier: the targets that can be tried, and each skipped one's reason."""

    tier: str
    route: str
    usable: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (model, reason)

    def describe(self) -> str:
        usable = ", ".join(self.usable) or "none"
        line = f"tier {self.tier} route {self.route}: usable {usable}"
        if self.skipped:
            line += "; skipped " + ", ".join(f"{m} ({why})" for m, why in self.skipped)
        return line


def skip_reason(model: Model, stored: Collection[str] = ()) -> str | None:
    """Why ``model`` cannot be tried with the system's keys, or None when it can."""
    upstream = model.upstream
    if upstream.requires_key and upstream.api_key is None and upstream.name not in stored:
        return f"{upstream.api_key_env or 'its api_key_env'} unset"
    return None


def route_targets(config: Config, stored: Collection[str] = ()) -> list[RouteTargets]:
    """Every route of every tier, in file order."""
    report = []
    for tier in config.tiers.values():
        for route, chain in tier.routes.items():
            usable, skipped = [], []
            for model in chain:
                reason = skip_reason(model, stored)
                if reason is None:
                    usable.append(model.name)
                else:
                    skipped.append((model.name, reason))
            report.append(RouteTargets(tier.name, route, tuple(usable), tuple(skipped)))
    return report


def unusable_routes(config: Config, stored: Collection[str] = ()) -> list[str]:
    """``tier/route`` for each route none of whose targets can be tried (for readiness)."""
    return [f"{r.tier}/{r.route}" for r in route_targets(config, stored) if not r.usable]
