"""A request's reservation worked out once per user, key, tier, capability and second.

Every request of one user through one key, at one tier and capability, checks the same
counters in the same second: the same keys, fields, limits and times to live (these count
whole seconds), only the amounts differ. A ``ReservationPlan`` holds those checks
(``counters.template``) and what the admission and its settle need besides; ``counters.fill``
puts a request's amounts in. The plan is rebuilt when the second changes, so a busy key pays
for the keys and limits once a second instead of on every request. Bounded, as users and keys
come from the config and the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.metering import counters, level_limits
from gateway.metering.allowance import LevelShape, shapes
from gateway.metering.limit_errors import HeaderBlock, block_headers, reset_header
from gateway.metering.settle import LeaseLayout, SettleLayout, lease_layout, settle_layout
from gateway.metering.types import Check, KeyLimits, LevelLimits, MeterRequest
from gateway.metering.windows import Windows, windows_at
from gateway.store import keys
from gateway.store.port import CounterLayout, Decision

# (user, key id, tier, capability, byok, tier shard): what decides a request's counters
PlanKey = tuple[str, str, str, str, bool, int]
# the level checks an allowance covers (``allowances.py``): every window's and in-flight count
LEVEL_KINDS = frozenset(level_limits.KINDS)


@dataclass(slots=True, frozen=True)
class Local:
    """A plan's reservation when its levels' counters are covered by allowances: the other
    checks, laid out as ``ReservationPlan``'s, and the levels."""

    checks: tuple[Check, ...]
    fills: counters.Fills
    settle_layout: SettleLayout
    lease_layout: LeaseLayout
    shapes: tuple[LevelShape, ...]
    source: tuple[PlanKey, str]  # its decisions' source for ``LastKnown`` (not the plan's)
    layout: CounterLayout  # of ``checks``' counters, for the store


@dataclass(slots=True)
class ReservationPlan:
    """One second's checks of one (user, key, tier, capability), before the amounts."""

    key: PlanKey
    second: int
    limits: counters.ConfigLimits
    windows: Windows  # of the second's first request: the same day, month and minute
    checks: tuple[Check, ...]  # ``counters.template``
    fills: counters.Fills  # ``counters.fills``
    settle_layout: SettleLayout  # ``settle.settle_layout``
    lease_layout: LeaseLayout  # ``settle.lease_layout``
    output_cap: int  # ``counters.output_cap``
    override_key: str  # the user's store overrides
    reset: str  # the x-ratelimit-reset-* value all that second
    # the request's objects the checks were built from (a changed key makes another plan)
    key_limits: KeyLimits | None
    levels: tuple[LevelLimits, ...]
    local: Local | None = None  # None: no level window counters
    layout: CounterLayout = field(default_factory=CounterLayout)  # of ``checks``' counters
    # its admissions' rate-limit headers but the remaining counts (``limit_errors``), made
    # by the first; the checks of ``local`` head the same (requests, tokens: never a level's)
    header_block: HeaderBlock | None = None

    def rate_limit_headers(
        self, checks: tuple[Check, ...], decision: Decision, windows: Windows
    ) -> dict[str, str]:
        """An admission's rate-limit headers, from the block this plan keeps."""
        self.header_block, headers = block_headers(
            self.header_block, checks, decision, windows, self.reset
        )
        return headers


class Plans:
    """The latest ``ReservationPlan`` per (user, key, tier, capability, byok, shard)."""

    def __init__(self, limits: counters.LimitCache, size: int = 10_000) -> None:
        self._limits = limits
        self._size = size
        self._entries: dict[PlanKey, ReservationPlan] = {}

    def get(self, request: MeterRequest, now: float, tier_shard: int = -1) -> ReservationPlan:
        """The plan of ``request`` at ``now``; ``tier_shard`` as ``counters.reservation``'s."""
        second = int(now // 1)
        key = (
            request.user,
            request.key_id,
            request.tier.name,
            request.capability,
            request.byok,
            tier_shard,
        )
        plan = self._entries.get(key)
        if (
            plan is not None
            and plan.second == second
            and plan.key_limits is request.key_limits
            and plan.levels is request.levels
        ):
            return plan
        if plan is None and len(self._entries) >= self._size:
            self._entries.clear()
        plan = self._entries[key] = _plan(key, second, self._limits, request, now, tier_shard)
        return plan


def _plan(
    key: PlanKey,
    second: int,
    cache: counters.LimitCache,
    request: MeterRequest,
    now: float,
    tier_shard: int,
) -> ReservationPlan:
    limits = cache.get(request)
    windows = windows_at(now)
    checks = counters.template(limits, request, windows, tier_shard)
    local = tail = None
    if request.levels:
        # the levels' checks come last (``counters.template``), the minute's own tuple: their
        # shapes and layouts are looked up by its identity, not worked out again each second
        part = level_limits.minute_checks(request.levels, windows.now)
        found, last, tail = _level_parts(checks, part)
        if found:
            kept = (
                checks[: len(checks) - len(part)]
                if last
                else tuple(check for check in checks if check.kind not in LEVEL_KINDS)
            )
            local = _local(key, kept, found)
    if local is not None and tail is not None:
        # the levels' layouts follow the others' (``Local``'s, worked out already)
        fills = local.fills + tail[0]
        layouts = local.settle_layout + tail[1], local.lease_layout + tail[2]
    else:
        fills, layouts = counters.fills(checks), (settle_layout(checks), lease_layout(checks))
    return ReservationPlan(
        local=local,
        key=key,
        second=second,
        limits=limits,
        windows=windows,
        checks=checks,
        fills=fills,
        settle_layout=layouts[0],
        lease_layout=layouts[1],
        output_cap=counters.output_cap(limits, request),
        override_key=keys.user_overrides(request.user),
        reset=reset_header(windows, now),
        key_limits=request.key_limits,
        levels=request.levels,
    )


LevelTail = tuple[counters.Fills, SettleLayout, LeaseLayout]
# a template's level checks (``level_limits.minute_checks``, by identity) and their start →
# the level shapes, whether the checks before them are all the others, and ``_level_tail``
LevelParts = tuple[tuple[LevelShape, ...], bool, LevelTail | None]
_PARTS: dict[int, tuple[tuple[Check, ...], int, LevelParts]] = {}


def _level_parts(checks: tuple[Check, ...], part: tuple[Check, ...]) -> LevelParts:
    """The level shapes of ``checks``, whether they come last as ``part`` with no level check
    before it, and then their ``_level_tail``: found by ``part``'s identity (the same tuple all
    minute) and its start, rather than by hashing every level check each second."""
    start = len(checks) - len(part)
    found = _PARTS.get(id(part))
    if found is not None and found[0] is part and found[1] == start:
        return found[2]
    found_shapes = shapes(checks, LEVEL_KINDS)
    if not (checks[start:] == part and all(c.kind not in LEVEL_KINDS for c in checks[:start])):
        return found_shapes, False, None  # not laid out as ``template`` does: not kept
    if len(_PARTS) > 1_000:
        _PARTS.clear()
    parts = found_shapes, True, _level_tail(checks, start) if found_shapes else None
    _PARTS[id(part)] = (part, start, parts)  # holds ``part``: its id stays its own
    return parts


_TAILS: dict[tuple[tuple[Check, ...], int], LevelTail | None] = {}


def _level_tail(checks: tuple[Check, ...], start: int) -> LevelTail | None:
    """The fills and layouts of ``checks[start:]`` (the levels'), as the parts of
    ``checks``' that follow those of ``checks[:start]``; None if they do not (a lease group
    shared by both parts)."""
    levels = checks[start:]
    key = levels, start
    if key in _TAILS:
        return _TAILS[key]
    if len(_TAILS) > 1_000:
        _TAILS.clear()
    fills = tuple(fill for fill in counters.fills(checks) if fill[0] >= start)
    whole, first = lease_layout(checks), lease_layout(checks[:start])
    groups = whole[len(first) :]
    found = _TAILS[key] = (
        (fills, settle_layout(levels), groups) if first + groups == whole else None
    )
    return found


def _local(key: PlanKey, kept: tuple[Check, ...], found: tuple[LevelShape, ...]) -> Local:
    return Local(
        kept,
        counters.fills(kept),
        settle_layout(kept),
        lease_layout(kept),
        found,
        (key, "local"),
        CounterLayout(),
    )
