"""Redis Sentinel for real: one master, one replica, three sentinels, two `gateway serve`.

The gateways find the master through ``REDIS_SENTINELS``; killing it mid-load must cost a
few seconds without metering (in which the user, at the quota, stays refused), no 5xx, no lost
or doubled record, and the gateways must meter again on the promoted replica without a
restart. Figures are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from redis import Redis

from gateway.config.env_checks import runtime_problems
from gateway.config.runtime import Runtime
from gateway.metering.record_codec import decode
from gateway.store import keys
from tests.scale.gateways import Failover, burst, gateways, run_failover, write_config
from tests.scale.redis_ha import SentinelSetup, wait_for


@pytest.fixture
def sentinel() -> Iterator[SentinelSetup]:
    started = SentinelSetup().start()
    yield started
    started.close()


def sentinel_env(setup: SentinelSetup) -> dict[str, str]:
    return {"REDIS_SENTINELS": setup.sentinel_addresses, "REDIS_SENTINEL_MASTER": setup.MASTER_NAME}


def records(port: int) -> list[dict[str, object]]:
    with Redis(port=port) as redis:
        entries = redis.xrange(keys.USAGE_STREAM, "-", "+")
    return [record.as_dict() for _, fields in entries if (record := decode(fields[b"r"]))]


def test_the_sentinel_variables_make_one_url():
    env = {"REDIS_SENTINELS": "a:26379,b:26380", "REDIS_SENTINEL_MASTER": "m"}
    assert Runtime.from_env(env).redis_url == "redis+sentinel://a:26379,b:26380/m/0"
    env["REDIS_URL"] = "redis://:pw@ignored:6379/2"
    assert Runtime.from_env(env).redis_url == "redis+sentinel://:pw@a:26379,b:26380/m/2"


def test_sentinel_urls_are_checked_at_start():
    assert runtime_problems({"REDIS_URL": "redis+sentinel://:pw@a:26379,b:26379/m/1"}) == []
    assert runtime_problems({"REDIS_SENTINELS": "a:26379,b:26379"}) == []
    assert runtime_problems({"REDIS_URL": "redis+sentinel://a:26379"})  # no master named
    assert runtime_problems({"REDIS_URL": "redis+sentinel://a:x/m"})


def test_master_kill_through_sentinel(sentinel, upstream, tmp_path):
    config = write_config(tmp_path, upstream.base_url, requests_per_day=50)
    as_url = {"REDIS_URL": f"redis+sentinel://{sentinel.sentinel_addresses}/{sentinel.MASTER_NAME}"}
    with gateways(2, config, [sentinel_env(sentinel), as_url]) as served:  # both spellings
        urls = [g.url for g in served]
        answers = asyncio.run(burst(urls, 80))  # cold connections, resolved through sentinels
        assert collections.Counter(a.status_code for a in answers) == {200: 50, 429: 30}
        with Redis(port=sentinel.master.port) as redis:
            redis.flushall()
        old = sentinel.master.port
        failover = run_failover(urls, sentinel.master.kill)
        assert not [line for g in served for line in g.errors()]
    wait_for(lambda: sentinel.current_master_port() != old, 10, "sentinel failover")
    assert sentinel.current_master_port() == sentinel.replica.port
    written = records(sentinel.replica.port)
    print(f"\nsentinel failover: {failover.report(written)}")
    assert set(failover.statuses) <= {200, 429}  # no 5xx: the outage policy is "allow"
    assert failover.recovered
    # the user was at the quota when the master died: the outage admits none past it
    assert failover.unmetered == [] and failover.refused_in_outage
    assert Failover.doubled(written) == 0
    assert len(written) == len(failover.samples)
    exported = usage_export(tmp_path, {"REDIS_SENTINELS": sentinel.sentinel_addresses,
                                       "REDIS_SENTINEL_MASTER": sentinel.MASTER_NAME})  # fmt: skip
    assert len(exported) == len(written)  # the export found the promoted master too


def usage_export(config_dir: Path, env: dict[str, str]) -> list[object]:
    """``gateway usage export`` with only the sentinel variables set (no REDIS_URL)."""
    today = time.strftime("%Y-%m-%d", time.gmtime())
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--config-dir", str(config_dir), "usage", "export",
         "--from", today, "--to", today, "--format", "json"],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return list(orjson.loads(result.stdout))
