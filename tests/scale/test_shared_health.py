"""Breaker openings shared through Redis: one replica's opening makes every replica skip the
model; with Redis down each replica keeps its own breaker."""

from __future__ import annotations

import asyncio
import time

import httpx
import yaml

from gateway.config.model import BreakerPolicy, Settings
from gateway.proxy.breaker import Breakers, State
from gateway.proxy.shared_health import SharedHealth
from gateway.store.factory import create_store
from tests.redis_fixture import free_port
from tests.scale.gateways import KEY, chat_body, gateways
from tests.support import routes_doc, tiers_doc

HEADERS = {"authorization": f"Bearer {KEY}"}


def write_failing_config(directory, upstream_url):
    routes = routes_doc(upstream_url)
    routes["circuit_breaker"] = {"failures": 2, "window_s": 30, "cooldown_s": 60}
    (directory / "routes.yaml").write_text(yaml.safe_dump(routes))
    tiers = tiers_doc({"free": {"routes": {"text": ["fail-500"]}}})
    (directory / "tiers.yaml").write_text(yaml.safe_dump(tiers))
    return directory


def open_circuits(url: str) -> list[str]:
    return httpx.get(url + "/readyz").json()["open_circuits"]


def test_an_opening_on_one_replica_is_skipped_by_the_other(redis, upstream, tmp_path):
    config = write_failing_config(tmp_path, upstream.base_url)
    with gateways(2, config, {"REDIS_URL": redis.url}) as (first, second):
        for _ in range(2):  # two failed attempts each, the breaker opens after two
            httpx.post(first.url + "/v1/chat/completions", headers=HEADERS, json=chat_body())
        assert open_circuits(first.url) == ["fail-500"]
        started = time.monotonic()
        while "fail-500" not in open_circuits(second.url):
            assert time.monotonic() - started < 10, "the second replica never heard of it"
            time.sleep(0.05)
        print(f"\nsecond replica skipped the model {time.monotonic() - started:.2f} s later")
        sent = upstream.count("mock/fail-500")
        answer = httpx.post(second.url + "/v1/chat/completions", headers=HEADERS, json=chat_body())
        assert answer.status_code == 503
        assert upstream.count("mock/fail-500") == sent  # not even tried


def test_with_the_store_down_each_replica_keeps_its_own_breaker():
    async def main() -> None:
        store = create_store(f"redis://127.0.0.1:{free_port()}/0", Settings())  # nothing there
        shared = SharedHealth(store)
        policy = BreakerPolicy(failures=1, window_s=30, cooldown_s=60)
        breakers = Breakers(
            policy, time.monotonic, on_open=shared.publish, shared_open=shared.is_open
        )
        await shared.start()
        breakers.record_failure("m")
        assert breakers.state("m") is State.OPEN  # its own breaker
        await shared.refresh()  # the read fails quietly
        await asyncio.sleep(0.05)
        assert not shared.is_open("m")  # never published, and never raised
        assert breakers.state("other") is State.CLOSED
        await shared.aclose()
        await store.aclose()

    asyncio.run(main())
