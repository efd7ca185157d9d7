"""Quota- and budget-aware admission: a cheaper model of the chain, or fewer tokens, not a 429.

With a tier's ``on_exhausted: downgrade``, a request the caller's budget refuses at the first
model's price is reserved again at the price of each cheaper model of its chain, in chain
order; the first that fits serves it, with the chain cut to that model and the later ones no
dearer than it. Each try is the meter's own atomic reservation (a refused one holds nothing),
so the decision stays exact across processes. When no cheaper model fits either, a request
that generates tokens is reserved once more at the first model's price with ``max_tokens``
cut to what the budget has left (read from the quota view; the reservation that follows is
atomic, so a budget spent meanwhile still refuses it). Token quotas are per capability, the
same for every model of the chain: the meter already clamps ``max_tokens`` to what remains of
them (``flex``); such a clamp is reported as a downgrade too. Only when nothing fits: the 429.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from gateway.config.model import Model, Price
from gateway.errors import BudgetExceeded
from gateway.metering import Meter
from gateway.metering.counters import TOKENS_INDEX
from gateway.metering.types import Admission, MeterRequest
from gateway.proxy.routing import Plan

DOWNGRADE = "downgrade"


def price_rank(price: Price) -> float:
    """How dear a model is, for "cheaper": its token prices, then its unit prices."""
    units = price.per_image + price.per_minute + price.per_second
    return price.input + price.output + 1e6 * units


def clamped_by_quota(admission: Admission) -> bool:
    """Did the tokens check grant fewer output tokens than asked, for lack of room?"""
    checks, granted = admission.checks, admission.granted
    if len(checks) <= TOKENS_INDEX or len(granted) != len(checks):
        return False
    counter = checks[TOKENS_INDEX].counter
    return counter.flex > 0 and granted[TOKENS_INDEX] - counter.fixed < counter.flex


def cheaper_chains(chain: tuple[Model, ...]) -> list[tuple[Model, tuple[Model, ...]]]:
    """Each model cheaper than the first, in chain order, with the chain it would head: the
    models after it that are no dearer."""
    first = price_rank(chain[0].price)
    found = []
    for index, model in enumerate(chain[1:], start=1):
        rank = price_rank(model.price)
        if rank < first:
            rest = tuple(m for m in chain[index + 1 :] if price_rank(m.price) <= rank)
            found.append((model, (model, *rest)))
    return found


async def downgraded(
    meter: Meter, request: MeterRequest, plan: Plan
) -> tuple[Admission, Plan] | None:
    """After the budget refused ``request``: the admission of a cheaper model of the chain or
    of fewer tokens, and the plan to run; None when the tier does not downgrade or nothing
    fits."""
    if request.tier.on_exhausted != DOWNGRADE or request.byok:
        return None
    found = await _cheaper(meter, request, plan) or await _fewer_tokens(meter, request)
    if found is None:
        return None
    admission, chain = found
    return admission, Plan(plan.route, plan.capability, chain or plan.chain)


async def _cheaper(
    meter: Meter, request: MeterRequest, plan: Plan
) -> tuple[Admission, tuple[Model, ...]] | None:
    for model, chain in cheaper_chains(plan.chain):
        try:
            admission = await meter.admit(replace(request, price=model.price))
        except BudgetExceeded:
            continue
        return admission, chain
    return None


async def _fewer_tokens(meter: Meter, request: MeterRequest) -> tuple[Admission, None] | None:
    """Reserve with ``max_tokens`` cut to what the tightest budget has left, if any fits."""
    if not request.generates_tokens or request.price.output <= 0:
        return None
    view = await meter.users.quota_view(request.user, request.tier)
    left = remaining_micros(view)
    if left is None:
        return None
    tokens = affordable_tokens(request.price, request.prompt_tokens_estimate, left)
    if tokens < 1:
        return None
    try:
        admission = await meter.admit(replace(request, max_output_tokens=tokens))
    except BudgetExceeded:
        return None
    clamp = min(tokens, admission.clamp_max_tokens or tokens)
    return replace(admission, clamp_max_tokens=clamp), None


def remaining_micros(view: dict[str, Any]) -> int | None:
    """The least any budget of a quota view has left, in micro-USD (None: all unlimited)."""
    left = [
        period["remaining_usd"]
        for scope in view.get("budgets", {}).values()
        for period in scope.values()
        if period.get("remaining_usd") is not None
    ]
    return int(min(left) * 1_000_000) if left else None


def affordable_tokens(price: Price, prompt_tokens: int, micros: int) -> int:
    """Output tokens whose cost, with the prompt's, stays within ``micros`` (rounded up as
    the meter rounds)."""
    room = micros - prompt_tokens * price.input - 1
    return max(0, math.floor(room / price.output)) if room > 0 else 0
