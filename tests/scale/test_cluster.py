"""A real 3-master/3-replica Redis Cluster behind two `gateway serve` processes.

The first burst after the gateways start (cold connections) must hold the quota exactly and
answer no 5xx; killing the master that holds the user's slot mid-load must cost an outage of
a few seconds, no 5xx, and no lost or doubled usage record. Figures are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterator

import pytest
from redis.cluster import RedisCluster as SyncCluster
from redis.crc import key_slot

from gateway.config.model import Config, Price, Settings
from gateway.errors import BudgetExceeded
from gateway.metering import Meter, tier_shards
from gateway.metering.record_codec import decode
from gateway.metering.windows import windows_at
from gateway.store import keys
from gateway.store.factory import create_store
from gateway.store.port import Counter
from tests.metering.helpers import ok, request
from tests.redis_fixture import command
from tests.scale.gateways import USER, Failover, burst, gateways, run_failover, write_config
from tests.scale.redis_ha import RedisCluster
from tests.support import DEFAULT_ROUTES, build_config, routes_doc, tiers_doc

PRICE = Price(input=1.0)  # a 1,000-token prompt costs 1,000 micro-USD
TIER_LIMIT_USD = 0.2  # 200 such requests for the whole tier


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    started = RedisCluster().start()
    yield started
    started.close()


def client(cluster: RedisCluster) -> SyncCluster:
    live = next(n for n in cluster.nodes if n.process is not None and n.process.poll() is None)
    return SyncCluster(host="127.0.0.1", port=live.port)


def node_id(port: int) -> str:
    return command(port, "CLUSTER", "MYID").decode().split("\r\n")[1]


def records(cluster: RedisCluster) -> list[dict[str, object]]:
    with client(cluster) as redis:
        entries = redis.xrange(keys.USAGE_STREAM, "-", "+")
    return [record.as_dict() for _, fields in entries if (record := decode(fields[b"r"]))]


def flush(cluster: RedisCluster) -> None:
    with client(cluster) as redis:
        redis.flushall(target_nodes=SyncCluster.PRIMARIES)


def test_first_burst_on_cold_connections_admits_exactly_the_quota(cluster, upstream, tmp_path):
    config = write_config(tmp_path, upstream.base_url, requests_per_day=50)
    for trial in range(3):
        flush(cluster)
        with gateways(2, config, {"REDIS_URL": cluster.url}) as served:
            answers = asyncio.run(burst([g.url for g in served], 80))
            statuses = collections.Counter(a.status_code for a in answers)
            assert statuses == {200: 50, 429: 30}, (trial, statuses)
            assert all("x-ratelimit-limit-requests" in a.headers for a in answers)
            assert not [line for g in served for line in g.errors()]


def test_the_scripts_follow_a_slot_as_it_migrates(cluster):
    """ASK while the slot migrates (the key not yet moved), MOVED once it has: both followed."""
    key = "gw:{u:migrating}:d:1"
    slot = key_slot(key.encode())
    source = cluster.master_of(key)
    target = next(n for n in cluster.masters() if n is not source)
    ids = {n.port: node_id(n.port) for n in (source, target)}

    async def reserve(store) -> int:
        verdict = await store.reserve([Counter(key, "req", 1, 100)], None)
        return verdict.used[0]

    async def main() -> None:
        store = create_store(cluster.url, Settings())
        try:
            await reserve(store)  # the slot map is read: the key lives on the source
            command(target.port, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", ids[source.port])
            command(source.port, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", ids[target.port])
            fresh = "gw:{u:migrating}:d:2"  # not on the source: it answers ASK
            asked = await store.reserve([Counter(fresh, "req", 1, 100)], None)
            assert asked.ok
            assert b"cmdstat_asking:" in command(target.port, "INFO", "commandstats")
            command(source.port, "MIGRATE", "127.0.0.1", str(target.port), "", "0", "5000",
                    "KEYS", key)  # fmt: skip
            for node in cluster.masters():
                command(node.port, "CLUSTER", "SETSLOT", str(slot), "NODE", ids[target.port])
            assert await reserve(store) == 1  # MOVED: the counter found on the target
        finally:
            await store.aclose()

    asyncio.run(main())
    assert cluster.master_of(key) is target


def shard_config(shards: int) -> Config:
    tiers = {
        "free": {
            "routes": DEFAULT_ROUTES,
            "quotas": {"text_generation": {"requests_per_day": 10_000}},
            "tier_budget": {"usd_per_day": TIER_LIMIT_USD},
        }
    }
    settings = {"tier_budget_shards": shards}
    return build_config(routes_doc("http://127.0.0.1:9"), tiers_doc(tiers, settings=settings), {})


def evalsha_calls(cluster: RedisCluster) -> dict[int, int]:
    """EVALSHA calls per master port, from INFO commandstats."""
    calls = {}
    for node in cluster.masters():
        stats = node.info("commandstats")
        line = next((x for x in stats.splitlines() if x.startswith("cmdstat_evalsha:")), "")
        calls[node.port] = int(line.split("calls=")[1].split(",")[0]) if line else 0
    return calls


async def spend_tier_budget(
    url: str, config: Config, users: int, waves: int = 0
) -> tuple[int, int]:
    """Two meters (two processes' worth), 16 requests at a time from ``users`` users, until
    20 have been refused by the tier budget (or ``waves`` times); (admitted, refused)."""
    meters = [Meter(config, create_store(url, config.settings)) for _ in range(2)]
    admitted = refused = number = 0

    async def one(meter: Meter, user: str) -> None:
        nonlocal admitted, refused, number
        number += 1
        call = request(config, user=user, prompt=1_000, price=PRICE, request_id=f"t{number}")
        try:
            admission = await meter.admit(call)
        except BudgetExceeded:
            refused += 1
            return
        admitted += 1
        meter.finish(admission, ok(1_000, 0))

    try:
        while refused < 20 and (not waves or number < waves * 16):
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


def test_the_tier_budget_spreads_over_the_masters_and_holds(cluster):
    """``tier_budget_shards`` 6: the tier's counters live on every master, and 2 meters with
    40 users spend no more than the tier's limit and are refused only within 6 requests' cost
    of it. Figures: EVALSHA calls per master, sharded and not."""
    shards, cost = 6, 1_000  # micro-USD per request
    day = windows_at(time.time()).day
    names = tier_shards.all_day_keys("free", day, shards)
    assert {cluster.master_of(name).port for name in names} == {
        node.port for node in cluster.masters()
    }
    figures = {}
    for count in (1, shards):
        flush(cluster)
        before = evalsha_calls(cluster)  # 80 requests, half the budget: the steady state
        asyncio.run(spend_tier_budget(cluster.url, shard_config(count), 40, waves=5))
        after = evalsha_calls(cluster)
        figures[count] = sorted(after[port] - before[port] for port in after)
        flush(cluster)
        admitted, refused = asyncio.run(spend_tier_budget(cluster.url, shard_config(count), 40))
        with client(cluster) as redis:
            spent = sum(
                int(redis.hget(name, "usd") or 0)
                for name in tier_shards.all_day_keys("free", day, count)
            )
        limit = int(TIER_LIMIT_USD * 1_000_000)
        assert spent == admitted * cost
        assert limit - count * cost < spent <= limit, (count, spent, refused)
    print(f"\n80 requests, EVALSHA per master: 1 shard {figures[1]}, {shards} {figures[shards]}")


def test_master_kill_fails_over_without_5xx_or_lost_records(cluster, upstream, tmp_path):
    flush(cluster)
    config = write_config(tmp_path, upstream.base_url, requests_per_day=50)
    victim = cluster.master_of(keys.user_day(USER, "x"))
    with gateways(2, config, {"REDIS_URL": cluster.url}) as served:
        failover = run_failover([g.url for g in served], victim.kill)
        assert not [line for g in served for line in g.errors()]
    written = records(cluster)
    print(f"\ncluster failover: {failover.report(written)}")
    assert set(failover.statuses) <= {200, 429}  # no 5xx: the outage policy is "allow"
    assert failover.recovered
    # the user was at the quota when the master died: the outage admits none past it
    assert failover.unmetered == [] and failover.refused_in_outage
    assert Failover.doubled(written) == 0
    assert len(written) == len(failover.samples)  # none lost
