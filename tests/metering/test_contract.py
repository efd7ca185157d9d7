"""The same suite against the memory store, a Redis server and a one-node Redis Cluster."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.config.model import Budget, Config, Price, Quota, UserOverride
from gateway.errors import BudgetExceeded, QuotaExceeded
from gateway.metering import Admission, Amounts, Meter
from gateway.metering.record import UsageRecord
from gateway.store.factory import create_store
from gateway.usage.records import UsageRecords

from .helpers import NOON, Clock, metered, ok, request, run

LLAMA = Price(input=0.18, output=0.18)
DOLLAR_PER_TOKEN = Price(input=1_000_000.0, output=1_000_000.0)  # 1 USD a token


def tokens_used(view: dict[str, Any], capability: str = "text_generation") -> int:
    """What the counter holds: settled use plus reservations in flight."""
    line = view["capabilities"][capability]["tokens"]
    return int(line["used"] + line["reserved"])


def requests_used(view: dict[str, Any], capability: str = "text_generation") -> int:
    line = view["capabilities"][capability]["requests"]
    return int(line["used"] + line["reserved"])


def test_reserve_then_reconcile_to_actual_usage(config: Config, store_url: str | None) -> None:
    seen: list[UsageRecord] = []

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock(), on_record=seen.append) as (meter, _):
            admission = await meter.admit(request(config, prompt=10, max_tokens=100, price=LLAMA))
            assert admission.reserved == Amounts(1, 110, 0, 20)  # ceil(110 * 0.18)
            assert admission.clamp_max_tokens is None
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert (requests_used(view), tokens_used(view)) == (1, 110)
            line = view["capabilities"]["text_generation"]["tokens"]
            assert (line["used"], line["reserved"]) == (0, 110)  # in flight, not yet used
            assert view["budgets"]["user"]["day"]["used_usd"] == 0
            assert view["budgets"]["user"]["day"]["reserved_usd"] == pytest.approx(20e-6)

            meter.finish(admission, ok(12, 30, price=LLAMA))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert (requests_used(view), tokens_used(view)) == (1, 42)
            assert view["budgets"]["user"]["day"]["used_usd"] == pytest.approx(8e-6)
            assert view["budgets"]["user"]["month"]["used_usd"] == pytest.approx(8e-6)
            assert view["budgets"]["tier"]["day"]["used_usd"] == pytest.approx(8e-6)

    run(scenario())
    assert [(r.prompt_tokens, r.completion_tokens, r.cost_usd) for r in seen] == [(12, 30, 8e-6)]


def test_finish_never_raises(config: Config) -> None:
    async def admitted() -> Admission:
        async with metered(config, None, clock=Clock()) as (meter, _):
            return await meter.admit(request(config))

    admission = run(admitted())
    meter = Meter(config, create_store(None, config.settings))
    meter.finish(admission, ok())  # no running loop: logged, not raised


def test_actual_usage_above_the_reservation_is_charged(
    config: Config, store_url: str | None
) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            admission = await meter.admit(request(config, prompt=10, max_tokens=100))
            meter.finish(admission, ok(50, 200))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert tokens_used(view) == 250

    run(scenario())


def test_failure_gives_everything_back(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, store):
            admission = await meter.admit(request(config, prompt=10, max_tokens=100, price=LLAMA))
            meter.finish(admission, ok(None, None, status=502))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert (requests_used(view), tokens_used(view)) == (0, 0)
            assert view["budgets"]["user"]["day"]["used_usd"] == 0
            [record] = await UsageRecords(store, Clock()).read("alice", NOON - 1, NOON + 1)
            assert (record.status, record.prompt_tokens, record.estimated) == (
                502,
                0,
                False,
            )

    run(scenario())


def test_byok_counts_the_request_only(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, store):
            admission = await meter.admit(
                request(config, byok=True, prompt=10, max_tokens=100, price=LLAMA)
            )
            assert admission.reserved == Amounts(requests=1)
            meter.finish(admission, ok(1000, 2000, price=LLAMA))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert (requests_used(view), tokens_used(view)) == (1, 0)
            assert view["budgets"]["user"]["day"]["used_usd"] == 0
            [record] = await UsageRecords(store, Clock()).read("alice", NOON - 1, NOON + 1)
            assert record.byok is True
            assert (record.prompt_tokens, record.completion_tokens) == (1000, 2000)
            assert record.cost_usd == pytest.approx(540e-6)

    run(scenario())


def test_request_quota_trips_with_message_and_headers(
    config: Config, store_url: str | None
) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            first = await meter.admit(request(config, prompt=10, max_tokens=100))
            assert first.headers == {
                "x-ratelimit-limit-requests": "50",
                "x-ratelimit-remaining-requests": "49",
                "x-ratelimit-reset-requests": "12h0m0s",
                "x-ratelimit-limit-tokens": "10000",
                "x-ratelimit-remaining-tokens": "9890",
                "x-ratelimit-reset-tokens": "12h0m0s",
            }
            for _ in range(49):
                await meter.admit(request(config, prompt=1))
            with pytest.raises(QuotaExceeded) as caught:
                await meter.admit(request(config, prompt=1))
            error = caught.value
            assert not isinstance(error, BudgetExceeded)
            assert error.code == "quota_exceeded" and error.status == 429
            assert error.message == (
                "Daily text_generation request quota of 50 exceeded for tier 'free'; "
                "resets at 2026-11-23T00:00:00Z"
            )
            assert error.headers["retry-after"] == "43200"
            assert error.headers["x-ratelimit-remaining-requests"] == "0"

    run(scenario())


def test_unlimited_trios_are_left_out(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            image = await meter.admit(request(config, capability="image_generation", prompt=0))
            assert set(image.headers) == {
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            }
            unlimited = await meter.admit(request(config, tier="enterprise", max_tokens=10))
            assert unlimited.headers == {}

    run(scenario())


def test_tokens_clamp_to_what_remains_then_trip(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            await meter.users.set_override("alice", "text_generation", Quota(tokens_per_day=1000))
            clamped = await meter.admit(request(config, prompt=10, max_tokens=4096))
            assert clamped.clamp_max_tokens == 990  # 2000 per request, then 1000 - 10 remain
            assert clamped.headers["x-ratelimit-remaining-tokens"] == "0"
            with pytest.raises(QuotaExceeded) as caught:
                await meter.admit(request(config, prompt=10, max_tokens=10))
            assert caught.value.message.startswith(
                "Daily text_generation token quota of 1000 exceeded for user 'alice' "
                "(1000 used, this request needs 11); resets at"
            )

    run(scenario())


def test_without_max_tokens_the_tier_cap_is_reserved_and_set(
    config: Config, store_url: str | None
) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            chat = request(config, prompt=10, generates_tokens=True)
            capped = await meter.admit(chat)
            assert (capped.reserved.tokens, capped.clamp_max_tokens) == (2010, 2000)
            asked = await meter.admit(replace(chat, max_output_tokens=100))
            assert (asked.reserved.tokens, asked.clamp_max_tokens) == (110, None)
            embedding = await meter.admit(request(config, capability="embeddings", prompt=10))
            assert (embedding.reserved.tokens, embedding.clamp_max_tokens) == (10, None)
            unlimited = await meter.admit(replace(chat, tier=config.tiers["enterprise"]))
            assert (unlimited.reserved.tokens, unlimited.clamp_max_tokens) == (10, None)

    run(scenario())


def test_store_override_beats_config_override(config: Config, store_url: str | None) -> None:
    users = {"bob": UserOverride({"text_generation": Quota(requests_per_day=2)})}
    config = replace(config, users=users)

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            bob = request(config, user="bob", max_tokens=100)
            for _ in range(2):
                await meter.admit(bob)
            with pytest.raises(QuotaExceeded, match="quota of 2 exceeded for user 'bob'"):
                await meter.admit(bob)
            await meter.users.set_override(
                "bob", "text_generation", Quota(requests_per_day=3, tokens_per_request=64)
            )
            third = await meter.admit(bob)
            assert third.clamp_max_tokens == 64
            with pytest.raises(QuotaExceeded, match="quota of 3 exceeded"):
                await meter.admit(bob)
            stored = await meter.users.override("bob")
            assert stored.quotas["text_generation"] == Quota(3, None, 64, None)
            await meter.users.set_override("bob", "text_generation", None)
            assert (await meter.users.override("bob")).quotas == {}

    run(scenario())


def test_day_and_month_windows_reset(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with metered(config, store_url, clock=clock) as (meter, _):
            await meter.users.set_override("alice", "text_generation", Quota(requests_per_day=1))
            await meter.users.set_budget("alice", Budget(usd_per_day=10, usd_per_month=2.5))
            paid = request(config, prompt=1, price=DOLLAR_PER_TOKEN)
            await meter.admit(paid)
            with pytest.raises(QuotaExceeded, match="request quota of 1"):
                await meter.admit(paid)
            clock.advance(12 * 3600)  # 2026-11-23T00:00:00Z
            await meter.admit(paid)
            clock.advance(86400)
            with pytest.raises(BudgetExceeded) as caught:
                await meter.admit(paid)
            assert caught.value.message == (
                "Monthly budget of $2.50 exceeded for user 'alice' ($2.00 used, this request "
                "needs $1.00); resets at 2026-12-01T00:00:00Z"
            )
            assert caught.value.headers["retry-after"] == str(7 * 86400)
            clock.advance(7 * 86400)  # 2026-12-01
            await meter.admit(paid)

    run(scenario())


def test_user_daily_budget_trips(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            dime = request(config, prompt=1, price=Price(input=100_000.0))  # $0.10
            for _ in range(5):
                await meter.admit(dime)
            with pytest.raises(BudgetExceeded) as caught:
                await meter.admit(dime)
            assert caught.value.code == "budget_exceeded"
            assert caught.value.message.startswith("Daily budget of $0.50 exceeded for user")
            assert caught.value.headers["retry-after"] == "43200"

    run(scenario())


def test_tier_budget_trips_and_gives_back_the_user_grants(
    config: Config, store_url: str | None
) -> None:
    free = replace(config.tiers["free"], tier_budget=Budget(usd_per_day=1.0))
    config = replace(config, tiers={**config.tiers, "free": free})

    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            price = Price(input=400_000.0)  # $0.40 a request
            for user in ("u1", "u2"):
                await meter.admit(request(config, user=user, prompt=1, price=price))
            with pytest.raises(BudgetExceeded, match=r"Daily budget of \$1\.00 exceeded for tier"):
                await meter.admit(request(config, user="u3", prompt=1, price=price))
            view = await meter.users.quota_view("u3", free)
            assert requests_used(view) == 0
            assert view["budgets"]["user"]["day"]["used_usd"] == 0
            assert view["budgets"]["tier"]["day"]["used_usd"] == pytest.approx(0.8)

    run(scenario())


def test_audio_minutes_quota(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            tts = request(config, capability="audio_tts", prompt=0, audio_ms=4 * 60_000)
            admission = await meter.admit(tts)
            with pytest.raises(QuotaExceeded, match="audio_tts quota of 5 minutes"):
                await meter.admit(replace(tts, audio_ms_estimate=2 * 60_000))
            meter.finish(admission, ok(None, None, audio_ms=90_000))
            await meter.settled()
            await meter.admit(replace(tts, audio_ms_estimate=2 * 60_000))
            view = await meter.users.quota_view("alice", config.tiers["free"])
            minutes = view["capabilities"]["audio_tts"]["audio_minutes"]
            # 1.5 minutes settled, 2 held by the request still in flight
            assert minutes == {"limit": 5.0, "used": 1.5, "reserved": 2.0, "remaining": 1.5}

    run(scenario())


def test_quota_view_shape(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            admission = await meter.admit(request(config, prompt=10, max_tokens=100))
            meter.finish(admission, ok(10, 20))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            assert view["resets_at"] == {
                "day": "2026-11-23T00:00:00Z",
                "month": "2026-12-01T00:00:00Z",
            }
            assert view["capabilities"]["text_generation"] == {
                "requests": {"limit": 50, "used": 1, "reserved": 0, "remaining": 49},
                "tokens": {"limit": 10000, "used": 30, "reserved": 0, "remaining": 9970},
                "tokens_per_request": 2000,
                "audio_minutes": {"limit": None, "used": 0.0, "reserved": 0.0, "remaining": None},
            }
            assert list(view["capabilities"]) == [
                "text_generation",
                "code_generation",
                "vision_analysis",
                "image_generation",
                "audio_tts",
                "audio_stt",
                "embeddings",
                "moderation",
            ]
            assert view["budgets"]["user"]["day"] == {
                "limit_usd": 0.5,
                "used_usd": 0.0,
                "reserved_usd": 0.0,
                "remaining_usd": 0.5,
            }
            assert view["budgets"]["tier"]["month"]["limit_usd"] == 1000.0

    run(scenario())


def test_records_filter_by_user_and_time(config: Config, store_url: str | None) -> None:
    async def scenario() -> None:
        clock = Clock()
        async with metered(config, store_url, clock=clock) as (meter, store):
            for user in ("alice", "bob", "alice"):
                admission = await meter.admit(
                    request(config, user=user, request_id=f"{user}-{clock.now}")
                )
                meter.finish(admission, ok(None, None, completion_chars=400, latency_ms=12.34))
                await meter.settled()
                clock.advance(3600)
            alice = await UsageRecords(store, clock).read("alice", NOON, NOON + 3 * 3600)
            assert [r.ts for r in alice] == [NOON, NOON + 7200]
            assert alice[0].time == "2026-11-22T12:00:00.000Z"
            assert (alice[0].prompt_tokens, alice[0].completion_tokens) == (10, 100)
            assert alice[0].estimated is True and alice[0].latency_ms == 12.3
            everyone = await UsageRecords(store, clock).read(None, NOON, NOON + 3 * 3600)
            assert [r.user for r in everyone] == ["alice", "bob", "alice"]
            assert await UsageRecords(store, clock).read(None, NOON + 1, NOON + 3600) == []
            later = await UsageRecords(store, clock).read(None, NOON + 3600, NOON + 3 * 3600)
            assert [r.user for r in later] == ["bob", "alice"]

    run(scenario())
