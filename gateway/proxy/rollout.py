"""Weighted rollout: which weighted entry of a route's chain a user gets, sticky per user.

A route's chain may give some entries a weight (tiers.yaml ``{model: m, weight: 10}``); the
control plane's kind ``weights`` (id: the tier, document: route → model → weight) replaces
them at run time. A user's point in [0, 1) is a hash of (tier, route, user), so the same user
lands on the same entry while the weights stay, and a 10 % entry gets about 10 % of the users.
The chosen entry goes first; the rest of the chain follows in its configured order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from gateway.config.model import Model, Tier
from gateway.proxy.routing import Plan

WEIGHTS_KIND = "weights"
_SCALE = float(1 << 64)


class ControlView(Protocol):
    """What is read of the control plane's snapshot (``gateway.control.plane.Snapshot``)."""

    @property
    def version(self) -> int: ...

    def kind(self, name: str) -> Mapping[str, dict[str, Any]]: ...


def user_point(tier: str, route: str, user: str) -> float:
    """The user's sticky point in [0, 1) for one route of one tier."""
    digest = hashlib.blake2b(f"{tier}\0{route}\0{user}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def pick(weights: Sequence[float], point: float) -> int | None:
    """The index whose share of the total weight covers ``point``; None when all are 0."""
    total = sum(weights)
    if total <= 0:
        return None
    mark = point * total
    running = 0.0
    last = None
    for index, weight in enumerate(weights):
        if weight <= 0:
            continue
        running += weight
        last = index
        if mark < running:
            return index
    return last


def reorder(chain: tuple[Model, ...], chosen: int) -> tuple[Model, ...]:
    """The chosen entry first, then the others in their configured order."""
    if chosen == 0:
        return chain
    return (chain[chosen], *chain[:chosen], *chain[chosen + 1 :])


def run_time_weights(
    document: Mapping[str, Any] | None, route: str, chain: tuple[Model, ...]
) -> tuple[float, ...] | None:
    """The weights a control-plane document gives ``route`` (by model name), or None."""
    if not document:
        return None
    by_model = document.get("routes", {}).get(route)
    if not isinstance(by_model, dict):
        return None
    return tuple(float(by_model.get(model.name, 0) or 0) for model in chain)


class Rollout:
    """Applies the weights; run-time ones read from the control plane's snapshot (an
    attribute read, no I/O), resolved once per snapshot version."""

    def __init__(self, snapshot: Callable[[], ControlView] | None = None) -> None:
        self._snapshot = snapshot
        self._version: int | None = None
        self._resolved: dict[tuple[str, str], tuple[float, ...] | None] = {}

    def weights(self, tier: Tier, route: str) -> tuple[float, ...] | None:
        """The effective weights of ``route`` in ``tier`` (run time first, then config)."""
        configured = tier.weights.get(route)
        if self._snapshot is None:
            return configured
        snapshot = self._snapshot()
        if snapshot.version != self._version:
            self._version, self._resolved = snapshot.version, {}
        key = (tier.name, route)
        if key not in self._resolved:
            document = snapshot.kind(WEIGHTS_KIND).get(tier.name)
            found = run_time_weights(document, route, tier.routes.get(route, ()))
            self._resolved[key] = found if found is not None else configured
        return self._resolved[key]

    def apply(self, tier: Tier, plan: Plan, user: str) -> tuple[Plan, str | None]:
        """``plan`` with the user's entry first, and that entry's name (None: no rollout:
        the request named a model, or the route has no weights)."""
        chain = tier.routes.get(plan.route)
        if chain is None or plan.chain is not chain:
            return plan, None
        weights = self.weights(tier, plan.route)
        if not weights:
            return plan, None
        chosen = pick(weights, user_point(tier.name, plan.route, user))
        if chosen is None:
            return plan, None
        return Plan(plan.route, plan.capability, reorder(chain, chosen)), chain[chosen].name
