"""The reservation rule, in Python. ``reserve.lua`` applies the same rule inside Redis.

For each counter, with ``used`` its current value and overrides applied to limit and cap:

* ``flex`` is capped at ``cap`` (tokens_per_request), then, when a limit is set, shrunk to
  ``limit - used - fixed``; the counter is denied when less than 1 flex token would fit.
* without flex, the counter is denied when ``used + fixed > limit``.
* a counter asking for nothing (``fixed + flex == 0``) is never denied.

Only when no counter is denied are the grants (``fixed + flex``) added.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.store.port import UNLIMITED, Counter, Decision


def effective(value: int, field: str, overrides: Mapping[str, int]) -> int:
    return overrides.get(field, value) if field else value


def grant(counter: Counter, used: int, limit: int, cap: int) -> int | None:
    """The amount to add for one counter, or None when it does not fit."""
    flex = counter.flex
    if flex > 0 and cap != UNLIMITED and flex > cap:
        flex = max(cap, 0)
    if limit == UNLIMITED or counter.fixed + flex == 0:
        return counter.fixed + flex
    room = limit - used - counter.fixed
    if flex > 0:
        return None if room < 1 else counter.fixed + min(flex, room)
    return None if room < 0 else counter.fixed


def decide(
    counters: Sequence[Counter], used: Sequence[int], overrides: Mapping[str, int]
) -> Decision:
    limits = tuple(effective(c.limit, c.limit_field, overrides) for c in counters)
    grants: list[int] = []
    for index, counter in enumerate(counters):
        cap = effective(counter.cap, counter.cap_field, overrides)
        amount = grant(counter, used[index], limits[index], cap)
        if amount is None:
            zeros = (0,) * len(counters)
            return Decision(tuple(used), limits, zeros, denied=index)
        grants.append(amount)
    return Decision(tuple(used), limits, tuple(grants))
