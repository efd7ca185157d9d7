"""Rate-limit headers for a response, and the error for a reservation that did not fit.

``x-ratelimit-reset-*`` values are Go-style durations as OpenAI sends them (``1h2m3s``,
``6m0s``, ``7s``): the time left until the window resets. ``retry-after`` is whole seconds.
A trio is left out when its limit is unlimited. ``x-ratelimit-remaining-*`` is what
``/v1/quota`` calls ``remaining``: the limit minus what settled requests used minus what
requests in flight hold, this request's own reservation included.
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.errors import BudgetExceeded, QuotaExceeded
from gateway.metering import counters, key_limits, level_limits
from gateway.metering.limits import budget_limits, quota_limits
from gateway.metering.pricing import MS_PER_MINUTE, micros_to_usd
from gateway.metering.types import Check, MeterRequest
from gateway.metering.windows import Windows, duration, iso_utc, seconds_until
from gateway.store.port import UNLIMITED, Decision

# check kind → its header names (limit, remaining, reset)
HEADER_NAMES = {
    kind: tuple(f"x-ratelimit-{part}-{suffix}" for part in ("limit", "remaining", "reset"))
    for kind, suffix in ((counters.REQUESTS, "requests"), (counters.TOKENS, "tokens"))
}
HEADED = counters.TOKENS_INDEX + 1  # the checks that may have headers: the first ones
MONTHLY = (counters.USER_MONTH, counters.TIER_MONTH)


def reset_header(windows: Windows, now: float) -> str:
    """The x-ratelimit-reset-* value at ``now``: the time left in the day."""
    return duration(seconds_until(windows.day_reset, now))


def rate_limit_headers(
    checks: tuple[Check, ...],
    decision: Decision,
    windows: Windows,
    now: float,
    reset: str = "",
) -> dict[str, str]:
    """``reset``: ``reset_header``'s value when known (worked out here otherwise)."""
    headers: dict[str, str] = {}
    limits, used, granted = decision.limits, decision.used, decision.granted
    # Only the requests and tokens checks have headers, and ``counters.reservation`` puts
    # them first: the rest (a team key has some thirty more) are not looked at.
    for index, check in enumerate(checks[:HEADED]):
        limit = limits[index]
        names = HEADER_NAMES.get(check.kind)
        if names is None or limit == UNLIMITED:
            continue
        reset = reset or reset_header(windows, now)
        left = limit - used[index] - granted[index]
        limit_name, remaining_name, reset_name = names
        headers[limit_name] = str(limit)
        headers[remaining_name] = str(left) if left > 0 else "0"
        headers[reset_name] = reset
    return headers


class HeaderBlock(NamedTuple):
    """A plan's rate-limit headers for the limits it was made with, but the remaining counts:
    the limits and the reset are the same for every request of one plan (one second)."""

    limits: tuple[int, ...]  # the decision's first ``HEADED`` limits
    headers: dict[str, str]  # every header, in order (the remaining ones to be replaced)
    remaining: tuple[tuple[int, int, str], ...]  # per headed check: index, limit, header


def block_headers(
    block: HeaderBlock | None,
    checks: tuple[Check, ...],
    decision: Decision,
    windows: Windows,
    reset: str,
) -> tuple[HeaderBlock, dict[str, str]]:
    """``rate_limit_headers`` (``reset`` given) from ``block`` when it was made for the
    decision's limits, else from a new block, returned too for the plan to keep."""
    limits = decision.limits
    if block is None or block.limits != limits[:HEADED]:
        headers = rate_limit_headers(checks, decision, windows, windows.now, reset)
        remaining = []
        for index, check in enumerate(checks[:HEADED]):
            names = HEADER_NAMES.get(check.kind)
            if names is not None and limits[index] != UNLIMITED:
                remaining.append((index, limits[index], names[1]))
        block = HeaderBlock(limits[:HEADED], headers, tuple(remaining))
    headers = block.headers.copy()
    used, granted = decision.used, decision.granted
    for index, limit, name in block.remaining:
        left = limit - used[index] - granted[index]
        headers[name] = str(left) if left > 0 else "0"
    return block, headers


def exceeded(
    request: MeterRequest,
    checks: tuple[Check, ...],
    decision: Decision,
    windows: Windows,
    now: float,
    note: str = "",
) -> QuotaExceeded:
    """``QuotaExceeded`` / ``BudgetExceeded`` naming the limit, with retry-after and headers;
    ``note`` ends the message."""
    index = decision.denied if decision.denied is not None else 0
    check = checks[index]
    limit, used = decision.limits[index], decision.used[index]
    if check.kind in key_limits.KINDS:
        return key_limits.exceeded(check, limit, used, windows, now)
    if check.kind in level_limits.KINDS:
        return level_limits.exceeded(check, request.levels, limit, used, now)
    if check.kind in counters.TIER_KINDS:  # the counter may hold a shard's slice: name the whole
        tier = budget_limits(request.tier.tier_budget)
        limit = tier.month if check.kind == counters.TIER_MONTH else tier.day
    reset = windows.month_reset if check.kind in MONTHLY else windows.day_reset
    headers = rate_limit_headers(checks, decision, windows, now)
    headers["retry-after"] = str(seconds_until(reset, now))
    needed = check.counter.fixed + (1 if check.counter.flex else 0)
    detail = ""
    if check.kind not in (
        counters.REQUESTS,
        counters.TIER_DAY,
        counters.TIER_MONTH,
    ):  # no tier totals
        used_text, needed_text = _amount(check.kind, used), _amount(check.kind, needed)
        detail = f" ({used_text} used, this request needs {needed_text})"
    message = (
        f"{_what(check.kind, request.capability, limit)} exceeded for "
        f"{_subject(request, check.kind, limit)}{detail}; resets at {iso_utc(reset)}{note}"
    )
    error = (
        QuotaExceeded
        if check.kind in (counters.REQUESTS, counters.TOKENS, counters.AUDIO)
        else BudgetExceeded
    )
    return error(message, headers=headers)


def _what(kind: str, capability: str, limit: int) -> str:
    if kind == counters.REQUESTS:
        return f"Daily {capability} request quota of {limit}"
    if kind == counters.TOKENS:
        return f"Daily {capability} token quota of {limit}"
    if kind == counters.AUDIO:
        return f"Daily {capability} quota of {_amount(kind, limit)}"  # audio or video minutes
    period = "Monthly" if kind in MONTHLY else "Daily"
    return f"{period} budget of {_amount(kind, limit)}"


def _subject(request: MeterRequest, kind: str, limit: int) -> str:
    """``tier 'free'`` when the tier's own limit applies, else ``user 'alice'``."""
    tier, user = f"tier '{request.tier.name}'", f"user '{request.user}'"
    if kind in (counters.TIER_DAY, counters.TIER_MONTH):
        return tier
    if kind in (counters.USER_DAY, counters.USER_MONTH):
        return user
    quota = quota_limits(request.tier.quota(request.capability))
    own = {
        counters.REQUESTS: quota.requests,
        counters.TOKENS: quota.tokens,
        counters.AUDIO: quota.audio_ms,
    }
    return tier if own[kind] == limit else user


def _amount(kind: str, value: int) -> str:
    if kind == counters.AUDIO:
        return f"{value / MS_PER_MINUTE:g} minutes"
    if kind in counters.BUDGET_KINDS:
        return f"${micros_to_usd(value):.2f}"
    return str(value)
