"""``level_limits.level_checks`` for a plan's template: the minute's checks themselves, the
same objects every second of the minute, equal to a request's checks of the same amounts."""

from __future__ import annotations

from gateway.metering import level_limits
from gateway.metering.counters import NO_ESTIMATE
from gateway.metering.types import Amounts, LevelLimits, Windowed

EVERY = Windowed(10**9, 10**9, 10**9, 10**9)
LEVELS = tuple(
    LevelLimits(level, f"{level}-1", "Europe/Paris", EVERY, EVERY, EVERY, max_parallel=10)
    for level in ("org", "team")
)
NOW = 1_796_000_000.0


def test_a_templates_level_checks_are_the_minutes_own() -> None:
    first = level_limits.level_checks(LEVELS, NOW, NO_ESTIMATE)
    later = level_limits.level_checks(LEVELS, NOW + 1, NO_ESTIMATE)
    assert len(first) == 2 * (4 * 3 + 1)
    assert all(a is b for a, b in zip(first, later, strict=True))  # no counter rebuilt
    # the same as a request's of one request and no tokens or cost (the long way)
    assert first == level_limits.level_checks(LEVELS, NOW, Amounts(1, 0, 7, 0))
    filled = level_limits.level_checks(LEVELS, NOW, Amounts(1, 50, 0, 30))
    assert {c.counter.fixed for c in filled if c.kind.endswith(".tokens")} == {50}
    assert {c.counter.fixed for c in filled if c.kind.endswith(".usd")} == {30}
    rolled = level_limits.level_checks(LEVELS, NOW + 60, NO_ESTIMATE)
    assert rolled[0].counter.key != first[0].counter.key  # another minute, another counter
