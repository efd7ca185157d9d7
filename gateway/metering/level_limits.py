"""An organization's or team's limits as extra checks of the request's one reservation.

Each level's counters share one hash tag, its own (``{o:<org>}``, ``{tm:<team>}``): a level is
shared by many users, so its counters cannot sit in a user's slot. On one Redis every counter
of a request is checked in one script; on a Cluster the store runs one script per hash tag,
concurrently (one round trip of wall time), and gives back every group's grants when any group
refuses (``store/redis/reserve.py``). Each level counter is one counter in one slot, so its
limit is never exceeded; the only error is toward refusing: a request may be refused while a
concurrent request's grant, refused by another group, is still held (for less than one round
trip), so a level may stop short of its limit by at most what such requests reserved.

=====================================  ======  ==========================================
key                                    type    fields
=====================================  ======  ==========================================
gw:{o:ORG}:min:EPOCH_MINUTE            hash    ``req``, ``tok``, ``usd`` (micro-USD)
gw:{o:ORG}:h:EPOCH_MINUTE_OF_START     hash    ``req``, ``tok``, ``usd``
gw:{o:ORG}:d:YYYYMMDD (local)          hash    ``req``, ``tok``, ``usd``
gw:{o:ORG}:m:YYYYMM (local)            hash    ``req``, ``tok``, ``usd``
gw:{o:ORG}:par                         hash    ``n``: requests in flight
=====================================  ======  ==========================================

(and the same under ``{tm:TEAM}``). A counter is kept only when the level has that limit.
Settles reconcile them like the user's counters; the in-flight count gives its 1 back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple

from gateway.errors import BudgetExceeded, QuotaExceeded
from gateway.metering.pricing import micros_to_usd
from gateway.metering.types import Amounts, Check, LevelLimits, Windowed
from gateway.metering.windows import COUNTER_GRACE_S, iso_utc, seconds_until
from gateway.metering.zoned_windows import WINDOWS, Window, zoned
from gateway.store import keys
from gateway.store.port import UNLIMITED, Counter

LEVELS = ("org", "team")
MEASURES = ("requests", "tokens", "usd")
TAGS = {"org": "o", "team": "tm"}
SHORT = {"minute": "min", "hour": "h", "day": "d", "month": "m"}
FIELDS = {"requests": keys.REQUESTS, "tokens": keys.TOKENS, "usd": keys.USD}
AMOUNT_INDEX = {"requests": -1, "tokens": 1, "usd": 3}  # in ``Amounts``; -1: always 1
# Counters outlive their window so a late settle still finds them (a lease lasts 15 min).
GRACE_S = {"minute": 900, "hour": 900, "day": COUNTER_GRACE_S, "month": COUNTER_GRACE_S}
PARALLEL = "parallel"
PARALLEL_TTL_S = 86_400  # refreshed by every reservation; the sweeper frees dead workers' slots
LEVEL_HEADER, WINDOW_HEADER = "x-gateway-limit-level", "x-gateway-limit-window"


class LevelKind(NamedTuple):
    """What a level check limits: ``window`` is "parallel" for requests in flight."""

    level: str
    window: str
    measure: str


KINDS: dict[str, LevelKind] = {
    f"{level}.{window}.{measure}": LevelKind(level, window, measure)
    for level in LEVELS
    for window in WINDOWS
    for measure in MEASURES
} | {f"{level}.{PARALLEL}": LevelKind(level, PARALLEL, "requests") for level in LEVELS}


# kind → the index in ``Amounts`` a settle counts (-1: nothing, for requests in flight)
SETTLED_INDEX = {
    kind: -1 if what.window == PARALLEL else {"requests": 0, "tokens": 1, "usd": 3}[what.measure]
    for kind, what in KINDS.items()
}


def base(level: str, level_id: str) -> str:
    return f"{keys.PREFIX}:{{{TAGS[level]}:{level_id}}}"


def window_key(level: str, level_id: str, window: Window) -> str:
    return f"{base(level, level_id)}:{SHORT[window.name]}:{window.id}"


def level_checks(levels: Sequence[LevelLimits], now: float, amounts: Amounts) -> list[Check]:
    """Every limit the levels have, one check each (none for a level without limits)."""
    minute = int(now // 60)
    if not (amounts.tokens or amounts.usd_micros):  # a plan's template, rebuilt every second:
        # the minute's checks as they are (a request count is always 1)
        return [check for limits in levels for check, _ in _templates(limits, minute)]
    checks = []
    for limits in levels:
        for check, index in _templates(limits, minute):
            if index < 0:  # a request count, or one in flight: the same every request
                checks.append(check)
                continue
            c = check.counter  # ``_make`` of a tuple: this runs for 16 counters per request
            counter = Counter._make((c[0], c[1], amounts[index], *c[3:]))
            checks.append(Check(check.kind, counter))
    return checks


def minute_checks(levels: Sequence[LevelLimits], now: float) -> tuple[Check, ...]:
    """``level_checks`` of a plan's template (no amounts): the same tuple all minute for the
    same ``levels`` object, found by its identity (a plan is rebuilt every second, and hashing
    every level's limits for ``_templates`` cost more than the rest of the levels' part)."""
    minute = int(now // 60)
    found = _MINUTE_CHECKS.get(id(levels))
    if found is not None and found[0] is levels and found[1] == minute:
        return found[2]
    if len(_MINUTE_CHECKS) > 1_000:
        _MINUTE_CHECKS.clear()
    checks = tuple([check for limits in levels for check, _ in _templates(limits, minute)])
    _MINUTE_CHECKS[id(levels)] = (levels, minute, checks)  # holds ``levels``: its id stays
    return checks


_MINUTE_CHECKS: dict[int, tuple[Sequence[LevelLimits], int, tuple[Check, ...]]] = {}


@functools.lru_cache(maxsize=1024)
def _templates(limits: LevelLimits, minute: int) -> tuple[tuple[Check, int], ...]:
    """A level's checks in one minute, worked out once: each with the index in ``Amounts`` of
    what it counts (-1: fixed at 1). Times to live are counted from the minute's start, so a
    counter may outlive its window by up to a minute more than ``GRACE_S``."""
    start = minute * 60
    found: list[tuple[Check, int]] = []
    for window in zoned(limits.timezone, start):
        for measure in MEASURES:
            limit = getattr(_measure(limits, measure), window.name)
            if limit == UNLIMITED:
                continue
            ttl = seconds_until(window.reset, start) + GRACE_S[window.name]
            key, field = window_key(limits.level, limits.id, window), FIELDS[measure]
            index = AMOUNT_INDEX[measure]
            counter = Counter(key, field, 1 if index < 0 else 0, limit, ttl_s=ttl)
            found.append((Check(f"{limits.level}.{window.name}.{measure}", counter), index))
    if limits.max_parallel != UNLIMITED:
        counter = Counter(
            f"{base(limits.level, limits.id)}:par", "n", 1, limits.max_parallel,
            ttl_s=PARALLEL_TTL_S, sliding=True,
        )  # fmt: skip
        found.append((Check(f"{limits.level}.{PARALLEL}", counter), -1))
    return tuple(found)


def _measure(limits: LevelLimits, measure: str) -> Windowed:
    if measure == "requests":
        return limits.requests
    return limits.tokens if measure == "tokens" else limits.usd


def _amount(measure: str, amounts: Amounts) -> int:
    if measure == "requests":
        return amounts.requests
    return amounts.tokens if measure == "tokens" else amounts.usd_micros


def amount_for(kind: str, amounts: Amounts) -> int:
    """What a level check counts of the actual usage (in flight: nothing once finished)."""
    index = SETTLED_INDEX[kind]
    return amounts[index] if index >= 0 else 0


def exceeded(
    check: Check, levels: Sequence[LevelLimits], limit: int, used: int, now: float
) -> QuotaExceeded:
    """429 naming the level and the window, with ``retry-after`` until the window resets and
    the ``x-gateway-limit-level`` / ``x-gateway-limit-window`` headers."""
    what = KINDS[check.kind]
    level_id = next((lv.id for lv in levels if lv.level == what.level), "")
    zone = next((lv.timezone for lv in levels if lv.level == what.level), "UTC")
    subject = f"{'Organization' if what.level == 'org' else 'Team'} '{level_id}'"
    headers = {LEVEL_HEADER: what.level, WINDOW_HEADER: what.window}
    if what.window == PARALLEL:
        headers["retry-after"] = "1"
        return QuotaExceeded(
            f"{subject}'s limit of {limit} requests in flight is reached; try again shortly",
            code=f"{what.level}_limit_exceeded", headers=headers,
        )  # fmt: skip
    window = getattr(zoned(zone, now), what.window)
    headers["retry-after"] = str(max(1, math.ceil(window.reset - now)))
    needed = check.counter.fixed
    if what.measure == "usd":
        amounts = f"${micros_to_usd(limit):.2f}", f"${micros_to_usd(used):.2f}"
        noun = f"{_per(what.window)} budget of {amounts[0]}"
        detail = f"{amounts[1]} used, this request needs ${micros_to_usd(needed):.2f}"
    else:
        noun = f"{_per(what.window)} {what.measure[:-1]} limit of {limit}"
        detail = f"{used} used, this request needs {needed}"
    message = f"{subject}'s {noun} ({zone}) exceeded ({detail}); resets at {iso_utc(window.reset)}"
    error = BudgetExceeded if what.measure == "usd" else QuotaExceeded
    return error(message, code=f"{what.level}_limit_exceeded", headers=headers)


def _per(window: str) -> str:
    return {"minute": "per-minute", "hour": "hourly", "day": "daily", "month": "monthly"}[window]


def plain(levels: Sequence[LevelLimits]) -> list[dict[str, Any]]:
    """The levels as JSON values (a video job's record keeps them for another worker)."""
    return [
        {"level": lv.level, "id": lv.id, "timezone": lv.timezone, "usd": list(lv.usd),
         "requests": list(lv.requests), "tokens": list(lv.tokens),
         "max_parallel": lv.max_parallel}
        for lv in levels
    ]  # fmt: skip


def from_plain(values: object) -> tuple[LevelLimits, ...]:
    """``plain``'s output back (a malformed entry is skipped)."""
    found = []
    for value in values if isinstance(values, list) else ():
        try:
            found.append(LevelLimits(
                str(value["level"]), str(value["id"]), str(value["timezone"]),
                Windowed(*map(int, value["usd"])), Windowed(*map(int, value["requests"])),
                Windowed(*map(int, value["tokens"])), int(value["max_parallel"]),
            ))  # fmt: skip
        except (KeyError, TypeError, ValueError):
            continue
    return tuple(found)
