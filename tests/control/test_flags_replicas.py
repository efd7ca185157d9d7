"""Two `gateway serve` processes on one redis-server: a flag flip and a tier quota change made
through one apply on the other (the measured times are printed: pytest -s)."""

from __future__ import annotations

from pathlib import Path

from tests.control.flag_setup import admin
from tests.control.serve_setup import chat, serve_env, until, write_config
from tests.mock_upstream import MockUpstream
from tests.redis_fixture import RedisServer
from tests.scale.gateways import gateways

QUOTA = "/v1/admin/tiers/free/quotas/text_generation"


def test_flag_and_tier_quota_changes_reach_the_other_process(
    upstream: MockUpstream, redis: RedisServer, tmp_path: Path
) -> None:
    config = write_config(tmp_path, upstream.base_url)
    with gateways(2, config, serve_env(redis.url)) as (a, b):
        assert chat(b.url, "free").headers["x-gateway-provider"] == "together"
        flag = "/v1/admin/flags/together_ai_integration"
        assert admin(a.url, "PUT", flag, json={"enabled": False}).status_code == 200
        flag_s = until(lambda: chat(b.url, "free").headers["x-gateway-provider"] == "mock")
        assert admin(b.url, "GET", flag).json()["enabled"] is False

        assert admin(a.url, "PUT", QUOTA, json={"requests_per_day": 0}).status_code == 200
        quota_s = until(lambda: chat(b.url, "free").status_code == 429)
        assert chat(b.url, "free").json()["error"]["code"] == "quota_exceeded"
        assert admin(b.url, "DELETE", QUOTA).status_code == 200
        back_s = until(lambda: chat(a.url, "free").status_code == 200)
        ms = [round(seconds * 1000) for seconds in (flag_s, quota_s, back_s)]
        print(
            f"\npropagation (ms, one chat per poll): flag A→B {ms[0]}, "
            f"quota A→B {ms[1]}, B→A {ms[2]}"
        )
        assert not a.errors() and not b.errors()
