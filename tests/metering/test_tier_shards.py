"""The tier budget split over shards: never more than the limit, refused only within the bound,
one counter per shard; and the outage fallback that admits only what was known to be left."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.config.model import Budget, Config, Price, Quota
from gateway.errors import BudgetExceeded, QuotaExceeded
from gateway.metering import Meter, tier_shards
from gateway.store.factory import create_store
from gateway.store.port import UNLIMITED

from .helpers import Clock, RedisServer, ok, request, run, with_settings

PRICE = Price(input=1.0)  # $1 per 1M prompt tokens: a 1,000-token prompt costs 1,000 micro-USD
COST = 1_000
LIMIT_USD = 0.05  # 50,000 micro-USD: 50 requests on one counter


def budget_config(config: Config, shards: int, requests: int = 1_000) -> Config:
    free = replace(
        config.tiers["free"],
        quotas={"text_generation": Quota(requests_per_day=requests)},
        user_budget=Budget(),
        tier_budget=Budget(usd_per_day=LIMIT_USD),
    )
    config = replace(config, tiers={**config.tiers, "free": free})
    return with_settings(config, tier_budget_shards=shards)


def test_slices_add_up_to_the_limit_and_home_shards_are_stable() -> None:
    for limit, shards in ((50_000, 4), (7, 3), (1, 8), (10**12 + 3, 16)):
        parts = [tier_shards.slice_limit(limit, s, shards) for s in range(shards)]
        assert sum(parts) == limit and max(parts) - min(parts) <= 1
    assert tier_shards.slice_limit(UNLIMITED, 0, 4) == UNLIMITED
    homes = {tier_shards.home_shard(f"user-{i}", 8) for i in range(200)}
    assert homes == set(range(8))
    assert tier_shards.home_shard("alice", 8) == tier_shards.home_shard("alice", 8)
    assert tier_shards.day_key("free", "20261126", 0, 1) == "gw:{t:free}:d:20261126"
    assert tier_shards.day_key("free", "20261126", 3, 4) == "gw:{t:free:3}:d:20261126"


async def admitted_until_refused(meter: Meter, config: Config, users: list[str]) -> int:
    """Requests of ``users`` in turn until the tier budget refuses one; how many fitted."""
    count = 0
    while True:
        user = users[count % len(users)]
        call = request(config, user=user, prompt=1_000, price=PRICE, request_id=f"r{count}")
        try:
            admission = await meter.admit(call)
        except BudgetExceeded as exc:
            assert "Daily budget of $0.05 exceeded for tier 'free'" in str(exc)
            return count
        meter.finish(admission, ok(1_000, 0))
        await meter.settled()
        count += 1


@pytest.mark.parametrize("users", [1, 7])
def test_sharded_tier_budget_holds_within_the_documented_bound(
    config: Config, store_url: str | None, users: int
) -> None:
    """One user (every shard reached by spill-over) or several: the tier never spends more
    than its limit and is refused only once less than N x the request's cost is left."""
    shards = 4
    config = budget_config(config, shards)

    async def scenario() -> None:
        store = create_store(store_url, config.settings)
        meter = Meter(config, store, clock=Clock())
        try:
            fitted = await admitted_until_refused(meter, config, [f"u{i}" for i in range(users)])
            spent = fitted * COST
            assert LIMIT_USD * 1e6 - shards * COST < spent <= LIMIT_USD * 1e6
            view = await meter.users.quota_view("u0", config.tiers["free"])
            assert view["budgets"]["tier"]["day"]["used_usd"] == pytest.approx(spent / 1e6)
            assert view["budgets"]["tier"]["day"]["limit_usd"] == LIMIT_USD
        finally:
            await meter.aclose()
            await store.aclose()

    run(scenario())


def test_one_shard_is_the_single_exact_counter(config: Config) -> None:
    config = budget_config(config, 1)

    async def scenario() -> None:
        meter = Meter(config, create_store(None, config.settings), clock=Clock())
        try:
            assert await admitted_until_refused(meter, config, ["a", "b"]) == 50
        finally:
            await meter.aclose()

    run(scenario())


def test_a_store_outage_admits_only_what_was_left(config: Config) -> None:
    """Policy allow: a user at their quota when Redis went away stays refused; one with 3
    left gets 3; a user this process never saw is admitted as before."""
    config = budget_config(config, 1, requests=5)
    with RedisServer() as server:

        async def scenario() -> None:
            store = create_store(server.url, config.settings)
            meter = Meter(config, store, clock=Clock())
            try:
                for index in range(5):
                    await meter.admit(request(config, user="full", request_id=f"f{index}"))
                with pytest.raises(QuotaExceeded):
                    await meter.admit(request(config, user="full"))
                for index in range(2):
                    await meter.admit(request(config, user="some", request_id=f"s{index}"))
                server.stop()
                with pytest.raises(QuotaExceeded, match=r"request quota of 5.*store unavailable"):
                    await meter.admit(request(config, user="full"))
                outage = [await meter.admit(request(config, user="some")) for _ in range(3)]
                assert all(a.granted == () for a in outage)  # admitted unmetered
                with pytest.raises(QuotaExceeded):
                    await meter.admit(request(config, user="some"))
                for _ in range(8):
                    await meter.admit(request(config, user="unseen"))
                assert meter.health.degraded
            finally:
                await meter.aclose()
                await store.aclose()

        run(scenario())
