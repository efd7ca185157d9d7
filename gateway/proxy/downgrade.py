"""Quota- and budget-aware admission: a cheaper model of the chain, or fewer tokens, not a 429.

With a tier's ``on_exhausted: downgrade``, a request the caller's budget refuses at the first
model's price is reserved again at the price of each cheaper model of its chain, in chain
order; the first that fits serves it, with the chain cut to that model and the later ones no
dearer than it. Each try is the meter's own atomic reservation (a refused one holds nothing),
so the decision stays exact across processes. Token quotas are per capability, the same for
every model of the chain: the meter already clamps ``max_tokens`` to what remains of them
(``flex``); such a clamp is reported as a downgrade too. Only when nothing fits: the 429.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.config.model import Model, Price
from gateway.errors import BudgetExceeded
from gateway.metering import Meter
from gateway.metering.plan import TOKENS_INDEX
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


async def admit(meter: Meter, request: MeterRequest, plan: Plan) -> tuple[Admission, Plan, bool]:
    """(the admission, the plan to run, downgraded?); raises the first refusal when nothing
    fits or the tier rejects."""
    try:
        admission = await meter.admit(request)
    except BudgetExceeded:
        if request.tier.on_exhausted != DOWNGRADE or request.byok:
            raise
        downgraded = await _cheaper(meter, request, plan)
        if downgraded is None:
            raise
        return downgraded
    return admission, plan, clamped_by_quota(admission)


async def _cheaper(
    meter: Meter, request: MeterRequest, plan: Plan
) -> tuple[Admission, Plan, bool] | None:
    for model, chain in cheaper_chains(plan.chain):
        try:
            admission = await meter.admit(replace(request, price=model.price))
        except BudgetExceeded:
            continue
        return admission, Plan(plan.route, plan.capability, chain), True
    return None
