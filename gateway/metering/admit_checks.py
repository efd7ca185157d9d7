"""Pure checks on a reservation: amounts in range, a tier's refusal, the max_tokens clamp."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import InvalidRequest
from gateway.metering import counters
from gateway.metering.types import Amounts, Check, MeterRequest
from gateway.store.port import MAX_AMOUNT, Decision


def tier_refused(checks: Sequence[Check], decision: Decision) -> bool:
    """Whether the counter that refused is one of the tier's (its budget: see tier_shards)."""
    return decision.denied is not None and checks[decision.denied].kind in counters.TIER_KINDS


def in_range(amounts: Amounts, flex: int) -> bool:
    """Whether every amount a reservation of this estimate holds is in range: then
    ``check_amounts`` would pass (each counter holds 0, 1 or one of these)."""
    requests, tokens, audio_ms, usd_micros = amounts  # compared one by one: no min, max
    return (
        0 <= flex <= tokens <= MAX_AMOUNT
        and 0 <= requests <= MAX_AMOUNT
        and 0 <= audio_ms <= MAX_AMOUNT
        and 0 <= usd_micros <= MAX_AMOUNT
    )


def check_amounts(checks: Sequence[Check]) -> None:
    """Refuse amounts no store can hold exactly, before any store is called."""
    for check in checks:
        counter = check.counter
        if not (0 <= counter.fixed <= MAX_AMOUNT >= counter.flex >= 0):
            raise InvalidRequest(
                f"The request's {check.kind} estimate is out of range; lower the amounts asked."
            )


def clamp(request: MeterRequest, flex: int) -> int | None:
    """The max_tokens to send upstream, when it differs from what the client asked."""
    if flex <= 0:
        return None
    if request.max_output_tokens <= 0:
        return flex
    return flex if flex < request.max_output_tokens else None
