"""The plan's feature flags applied to one request: free tier, Together, fallback, indicators.

Read from the control plane's snapshot in memory (no store round trip). With every flag on
and no run-time flag documents (the usual case) a request costs one identity check.

- ``together_ai_free_tier`` off: a key of the ``free`` tier gets a 403 (``free_tier_disabled``).
- ``together_ai_integration`` off: targets whose upstream is Together are dropped from the
  chain (the chain moves on); a chain left empty is a 503 naming the flag.
- ``together_ai_fallback`` off: the chain keeps its first model only (its deployments stay).
- ``together_ai_ui_indicators`` off: no model-source indicators (``ctx.indicators``).

An upstream is Together when it is named ``together`` or its base URL's host is
``together.xyz`` / ``together.ai`` or below them.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from gateway.config.model import Config, Upstream
from gateway.control.flags import (
    KIND,
    TOGETHER_FALLBACK,
    TOGETHER_FREE_TIER,
    TOGETHER_INTEGRATION,
    TOGETHER_UI_INDICATORS,
    flag_enabled,
)
from gateway.control.plane import ControlPlane, Snapshot
from gateway.errors import Forbidden, NoTargetAvailable
from gateway.proxy.auth import Principal
from gateway.proxy.routing import Plan

FREE_TIER = "free"
TOGETHER_HOSTS = ("together.xyz", "together.ai")
GATED = (TOGETHER_INTEGRATION, TOGETHER_FREE_TIER, TOGETHER_FALLBACK, TOGETHER_UI_INDICATORS)


def is_together(upstream: Upstream) -> bool:
    if upstream.name == "together":
        return True
    host = (urlsplit(upstream.base_url).hostname or "").lower()
    return any(host == h or host.endswith("." + h) for h in TOGETHER_HOSTS)


class FlagGate:
    """``apply`` narrows a request's plan by the flags; returns whether indicators are shown."""

    def __init__(self, config: Config, control: ControlPlane) -> None:
        self._config = config
        self._control = control
        self._seen: Snapshot | None = None
        self._all_on = False
        self._defaults_on = all(
            (d := config.flags.get(name)) is None or (d.enabled and d.rollout_percent >= 100)
            for name in GATED
        )  # an undeclared plan flag is on

    def apply(self, principal: Principal, plan: Plan) -> tuple[Plan, bool]:
        snapshot = self._control.snapshot
        if snapshot is not self._seen:
            self._seen = snapshot
            self._all_on = self._defaults_on and not any(
                name in snapshot.kind(KIND) for name in GATED
            )
        if self._all_on:
            return plan, True
        return self._gated(snapshot, principal, plan)

    def _gated(self, snapshot: Snapshot, principal: Principal, plan: Plan) -> tuple[Plan, bool]:
        user, config = principal.user, self._config
        if principal.tier.name == FREE_TIER and not flag_enabled(
            snapshot, config, TOGETHER_FREE_TIER, user
        ):
            raise Forbidden(
                "The free tier is switched off for now (flag together_ai_free_tier).",
                code="free_tier_disabled",
            )
        chain = plan.chain
        if not flag_enabled(snapshot, config, TOGETHER_INTEGRATION, user):
            chain = tuple(model for model in chain if not is_together(model.upstream))
            if not chain:
                raise NoTargetAvailable(
                    "Every model of this route is served by Together, and the Together "
                    "integration is switched off (flag together_ai_integration)."
                )
        if not flag_enabled(snapshot, config, TOGETHER_FALLBACK, user):
            chain = chain[:1]
        if chain is not plan.chain:
            plan = replace(plan, chain=chain)
        return plan, flag_enabled(snapshot, config, TOGETHER_UI_INDICATORS, user)
