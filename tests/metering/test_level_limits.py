"""Organization and team limits in the one reservation: windows in a time zone, the month
boundary with an injected clock, the 429 naming level and window, and a shared team budget
held by concurrent users on every store (memory, Redis, a Redis Cluster)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from gateway.config.model import Config, Price
from gateway.errors import BudgetExceeded, QuotaExceeded
from gateway.metering import counters, level_limits
from gateway.metering.level_limits import LEVEL_HEADER, WINDOW_HEADER
from gateway.metering.types import Amounts, LevelLimits, MeterRequest, Windowed
from gateway.metering.windows import windows_at
from gateway.metering.zoned_windows import valid_zone, zoned
from gateway.store import keys

from .helpers import Clock, metered, ok, request, run

AUCKLAND = "Pacific/Auckland"


def epoch(zone: str, *parts: int) -> float:
    return datetime(*parts, tzinfo=ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def test_the_month_and_day_follow_the_zones_calendar() -> None:
    # 2026-12-01 00:00:30 in Auckland is still November in UTC (NZDT is UTC+13)
    now = epoch(AUCKLAND, 2026, 12, 1, 0, 0, 30)
    local = zoned(AUCKLAND, now)
    assert (local.month.id, local.day.id) == ("202612", "20261201")
    assert windows_at(now).month == "202611"
    assert local.month.reset == epoch(AUCKLAND, 2027, 1, 1)
    assert local.day.reset == epoch(AUCKLAND, 2026, 12, 2)
    before = zoned(AUCKLAND, now - 60)
    assert before.month.id == "202611" and before.month.reset == epoch(AUCKLAND, 2026, 12, 1)


def test_the_hour_repeated_when_clocks_go_back_is_two_windows() -> None:
    zone = "America/New_York"  # 2026-11-01 02:00 EDT → 01:00 EST
    first = zoned(zone, epoch(zone, 2026, 11, 1, 1, 30))
    second = zoned(zone, first.hour.reset + 1800)
    assert first.hour.id != second.hour.id
    assert first.day.id == second.day.id == "20261101"
    assert first.day.reset - epoch(zone, 2026, 11, 1) == 25 * 3600


def test_half_hour_zones_have_their_hours_on_the_half_hour() -> None:
    now = epoch("Asia/Kolkata", 2026, 11, 22, 10, 15)
    hour = zoned("Asia/Kolkata", now).hour
    assert hour.reset == epoch("Asia/Kolkata", 2026, 11, 22, 11, 0)
    assert zoned("Asia/Kolkata", now).minute.reset == now + 60


def test_zone_names_are_checked() -> None:
    assert valid_zone("UTC") and valid_zone(AUCKLAND)
    assert not valid_zone("Mars/Olympus") and not valid_zone("../etc/passwd")


def test_each_level_has_its_own_hash_tag_and_only_its_limits_add_checks() -> None:
    team = LevelLimits("team", "ml", usd=Windowed(day=5), max_parallel=2)
    org = LevelLimits("org", "acme", AUCKLAND, tokens=Windowed(month=100))
    checks = level_limits.level_checks(
        [org, team, LevelLimits("team", "idle")], 0.0, Amounts(1, 40, 0, 3)
    )
    assert [c.kind for c in checks] == ["org.month.tokens", "team.day.usd", "team.parallel"]
    assert [keys.hash_tag(c.counter.key) for c in checks] == ["o:acme", "tm:ml", "tm:ml"]
    assert [c.counter.fixed for c in checks] == [40, 3, 1]
    assert [level_limits.amount_for(c.kind, Amounts(1, 7, 0, 2)) for c in checks] == [7, 2, 0]


def _in(levels: tuple[LevelLimits, ...], req: MeterRequest) -> MeterRequest:
    return replace(req, levels=levels, generates_tokens=True)


def test_an_org_monthly_token_quota_holds_across_the_month_boundary_in_its_zone(
    config: Config, store_url: str | None
) -> None:
    org = LevelLimits("org", "acme", AUCKLAND, tokens=Windowed(month=100))
    clock = Clock(epoch(AUCKLAND, 2026, 11, 30, 23, 58))

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, _):
            ask = _in((org,), request(config, prompt=30, max_tokens=20))
            for n in range(2):  # 2 x 50 tokens fill the month
                admitted = await meter.admit(replace(ask, request_id=f"r{n}"))
                meter.finish(admitted, ok(30, 20))
            await meter.settled()
            with pytest.raises(QuotaExceeded) as refused:
                await meter.admit(ask)
            error = refused.value
            assert error.headers[LEVEL_HEADER] == "org" and error.headers[WINDOW_HEADER] == "month"
            assert error.code == "org_limit_exceeded"
            assert int(error.headers["retry-after"]) == 120  # to midnight, Auckland time
            assert "Organization 'acme'" in error.message and AUCKLAND in error.message
            clock.now = epoch(AUCKLAND, 2026, 12, 1, 0, 0, 1)  # UTC is still in November
            admitted = await meter.admit(ask)
            meter.finish(admitted, ok(30, 20))
            await meter.settled()

    run(scenario())


def test_a_team_budget_refusal_names_the_team_and_the_day(
    config: Config, store_url: str | None
) -> None:
    team = LevelLimits("team", "ml", "Europe/Paris", usd=Windowed(day=1_000))
    price = Price(input=1_000.0)  # $0.001 a token: 10 prompt tokens cost 10_000 micro-USD

    async def scenario() -> None:
        async with metered(config, store_url) as (meter, _):
            with pytest.raises(BudgetExceeded) as refused:
                await meter.admit(_in((team,), request(config, price=price)))
            assert refused.value.headers[LEVEL_HEADER] == "team"
            assert refused.value.headers[WINDOW_HEADER] == "day"
            assert "Team 'ml'" in refused.value.message

    run(scenario())


def test_a_shared_team_budget_holds_under_concurrent_users(
    config: Config, store_url: str | None
) -> None:
    """4 users of one team, 40 concurrent requests: the team's counter never passes its
    limit, and it stops short of it by less than one request's cost."""
    each = 10_000  # micro-USD
    team = LevelLimits("team", "ml", usd=Windowed(day=95_000))
    price = Price(input=1_000.0)

    clock = Clock()

    async def scenario() -> None:
        async with metered(config, store_url, clock=clock) as (meter, store):
            asks = [
                _in((team,), request(config, user=f"u{n % 4}", price=price, request_id=f"r{n}"))
                for n in range(40)
            ]

            async def one(ask: MeterRequest) -> bool:
                try:
                    admitted = await meter.admit(ask)
                except QuotaExceeded:
                    return False
                meter.finish(admitted, ok(10, 0, price=price))
                return True

            results = await asyncio.gather(*(one(ask) for ask in asks))
            await meter.settled()
            assert sum(results) == 9
            day = zoned("UTC", clock.now).day
            (spent,) = await store.read_hashes([_team_day_key(day.id)])
            assert 95_000 - each < spent.get("usd", 0) <= 95_000

    run(scenario())


def _team_day_key(day: str) -> str:
    return f"{level_limits.base('team', 'ml')}:d:{day}"


def test_the_plan_appends_level_checks_after_the_keys(config: Config) -> None:
    team = LevelLimits("team", "ml", requests=Windowed(minute=3))
    req = _in((team,), request(config))
    checks = counters.reservation(counters.LimitCache(config).get(req), req, windows_at(0.0))
    assert checks[-1].kind == "team.minute.requests"
    assert counters.amount_for("team.minute.requests", Amounts(1, 0, 0, 0)) == 1


def test_levels_survive_a_video_jobs_record() -> None:
    levels = (
        LevelLimits("org", "acme", AUCKLAND, tokens=Windowed(month=100)),
        LevelLimits("team", "ml", AUCKLAND, usd=Windowed(1, 2, 3, 4), max_parallel=5),
    )
    assert level_limits.from_plain(level_limits.plain(levels)) == levels
    assert level_limits.from_plain([{"level": "org"}, "junk"]) == ()
    assert level_limits.from_plain(None) == ()
