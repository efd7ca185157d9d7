"""A team's and an organization's budget on a real 3-master Redis Cluster: two meters, 40
users whose counters spread over the masters, the team's counters on its own slot (another
master than most users'): the reservation runs one script per slot concurrently, and the team's
spend ends within one request's cost of its limit, never above it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from redis.cluster import RedisCluster as SyncCluster

from gateway.config.model import Config, Price
from gateway.errors import BudgetExceeded
from gateway.metering import Meter, level_limits
from gateway.metering.types import LevelLimits, Windowed
from gateway.metering.zoned_windows import zoned
from gateway.store import keys
from gateway.store.factory import create_store
from tests.metering.helpers import ok, request
from tests.scale.redis_ha import RedisCluster
from tests.support import DEFAULT_ROUTES, build_config, routes_doc, tiers_doc

PRICE = Price(input=1.0)  # a 1,000-token prompt costs 1,000 micro-USD
COST = 1_000
TEAM_LIMIT = 150_000  # micro-USD: 150 requests
ORG_LIMIT = 10**9
LEVELS = (
    LevelLimits("org", "corp", "America/Sao_Paulo", usd=Windowed(month=ORG_LIMIT)),
    LevelLimits("team", "ml", "America/Sao_Paulo", usd=Windowed(day=TEAM_LIMIT)),
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    started = RedisCluster().start()
    yield started
    started.close()


def config() -> Config:
    tiers = {"free": {"routes": DEFAULT_ROUTES}}
    return build_config(routes_doc("http://127.0.0.1:9"), tiers_doc(tiers), {})


async def spend(url: str, users: int) -> tuple[int, int]:
    chosen = config()
    meters = [Meter(chosen, create_store(url, chosen.settings)) for _ in range(2)]
    admitted = refused = number = 0

    async def one(meter: Meter, user: str) -> None:
        nonlocal admitted, refused, number
        number += 1
        call = request(chosen, user=user, prompt=1_000, price=PRICE, request_id=f"o{number}")
        try:
            admission = await meter.admit(replace(call, levels=LEVELS))
        except BudgetExceeded as exc:
            assert exc.headers["x-gateway-limit-level"] == "team"
            refused += 1
            return
        admitted += 1
        meter.finish(admission, ok(1_000, 0))

    try:
        while refused < 20:
            await asyncio.gather(
                *(one(meters[i % 2], f"user-{(number + i) % users}") for i in range(16))
            )
        for meter in meters:
            await meter.settled()
    finally:
        for meter in meters:
            await meter.aclose()
            await meter._store.aclose()
    return admitted, refused


def test_a_team_budget_holds_on_a_three_master_cluster(cluster: RedisCluster) -> None:
    with SyncCluster(host="127.0.0.1", port=cluster.masters()[0].port) as redis:
        redis.flushall(target_nodes=SyncCluster.PRIMARIES)
    now = time.time()
    team_key = level_limits.window_key("team", "ml", zoned("America/Sao_Paulo", now).day)
    org_key = level_limits.window_key("org", "corp", zoned("America/Sao_Paulo", now).month)
    user_masters = {cluster.master_of(keys.user_day(f"user-{n}", "x")).port for n in range(40)}
    assert len(user_masters) == 3  # the users' slots are on every master
    admitted, refused = asyncio.run(spend(cluster.url, 40))
    with SyncCluster(host="127.0.0.1", port=cluster.masters()[0].port) as redis:
        team_spent = int(redis.hget(team_key, "usd") or 0)
        org_spent = int(redis.hget(org_key, "usd") or 0)
    assert team_spent == org_spent == admitted * COST
    assert TEAM_LIMIT - COST < team_spent <= TEAM_LIMIT, (team_spent, refused)
