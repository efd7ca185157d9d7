"""A real 3-master/3-replica Redis Cluster behind two `gateway serve` processes.

The first burst after the gateways start (cold connections) must hold the quota exactly and
answer no 5xx; killing the master that holds the user's slot mid-load must cost an outage of
a few seconds, no 5xx, and no lost or doubled usage record. Figures are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator

import orjson
import pytest
from redis.cluster import RedisCluster as SyncCluster

from gateway.metering import keys
from tests.scale.gateways import USER, Failover, burst, gateways, run_failover, write_config
from tests.scale.redis_ha import RedisCluster


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    started = RedisCluster().start()
    yield started
    started.close()


def client(cluster: RedisCluster) -> SyncCluster:
    live = next(n for n in cluster.nodes if n.process is not None and n.process.poll() is None)
    return SyncCluster(host="127.0.0.1", port=live.port)


def records(cluster: RedisCluster) -> list[dict[str, object]]:
    with client(cluster) as redis:
        entries = redis.xrange(keys.USAGE_STREAM, "-", "+")
    return [orjson.loads(fields[b"r"]) for _, fields in entries]


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
    assert Failover.doubled(written) == 0
    assert len(written) == len(failover.samples)  # none lost
