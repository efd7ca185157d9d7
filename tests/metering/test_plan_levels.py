"""A team key's plan: its levels' fills and layouts are the parts of the whole plan's that
follow the others' (``Local``'s), worked out once a minute rather than every second."""

from __future__ import annotations

from dataclasses import replace

from gateway.config.model import Config
from gateway.metering import counters
from gateway.metering.plans import Plans
from gateway.metering.settle import lease_layout, settle_layout
from gateway.metering.types import KeyLimits, LevelLimits, Windowed

from .helpers import NOON, request

EVERY = Windowed(10**9, 10**9, 10**9, 10**9)
LEVELS = tuple(
    LevelLimits(level, f"{level}-1", "Europe/Paris", EVERY, EVERY, EVERY, max_parallel=10)
    for level in ("org", "team")
)


def test_a_team_plans_levels_are_laid_out_once_a_minute(config: Config) -> None:
    asked = replace(
        request(config, user="ann", tier="premium"),
        levels=LEVELS,
        key_limits=KeyLimits("k1", rpm=100, usd_day=10**9),
    )
    plans = Plans(counters.LimitCache(config))
    first, later = plans.get(asked, NOON), plans.get(asked, NOON + 1)
    assert first is not later  # another second: another plan
    for plan in (first, later):  # the same as worked out from the whole plan's checks
        assert plan.fills == counters.fills(plan.checks)
        assert plan.settle_layout == settle_layout(plan.checks)
        assert plan.lease_layout == lease_layout(plan.checks)
        assert plan.local is not None
        assert plan.checks[: len(plan.local.checks)] == plan.local.checks
    start = len(first.local.checks) if first.local else 0
    assert len(first.checks) - start == 2 * (4 * 3 + 1)
    assert all(
        a is b
        for a, b in zip(first.settle_layout[start:], later.settle_layout[start:], strict=True)
    )  # the levels' part: the minute's own, not rebuilt
    assert first.lease_layout[-1] is later.lease_layout[-1]


def test_a_team_plans_level_shapes_are_the_minutes_and_follow_its_other_checks(
    config: Config,
) -> None:
    """The shapes are found by the minute's level checks (their identity) and where they
    start: the same objects all minute, new ones the next minute, and right for another key
    of the team whose own checks are more (its levels start later)."""
    team_key = replace(request(config, user="ann", tier="premium"), levels=LEVELS)
    limited = replace(team_key, key_limits=KeyLimits("k1", rpm=100, usd_day=10**9))
    plans = Plans(counters.LimitCache(config))
    for asked in (team_key, limited, team_key):
        first, later = plans.get(asked, NOON), plans.get(asked, NOON + 1)
        following = plans.get(asked, NOON + 60)
        assert first.local is not None and later.local is not None
        assert following.local is not None
        assert later.local.shapes is first.local.shapes
        assert following.local.shapes is not first.local.shapes
        for plan in (first, later, following):
            assert plan.local is not None
            assert plan.local.checks == tuple(
                check for check in plan.checks if not check.kind.startswith(("org.", "team."))
            )
            for shape in plan.local.shapes:  # each counter at its place in the plan's checks
                for position, key, field, _, limit, ttl in shape.counters:
                    counter = plan.checks[position].counter
                    assert (counter.key, counter.field, counter.limit) == (key, field, limit)
                    assert counter.ttl_s == ttl
        minute = following.local.shapes[0].counters[0][1]
        assert minute != first.local.shapes[0].counters[0][1]  # the next minute's counter
