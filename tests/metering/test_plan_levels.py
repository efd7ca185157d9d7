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
