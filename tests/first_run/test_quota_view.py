"""/v1/quota tells settled use, reservations in flight and what remains apart, and the
rate-limit headers use the same `remaining` (real Redis, and the in-process store)."""

from __future__ import annotations

import pytest

from gateway.config.model import Config
from tests.metering.helpers import Clock, metered, ok, request, run


@pytest.fixture(params=["memory", "redis"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "memory":
        return None
    server = request.getfixturevalue("redis_server")
    server.flushall()
    return str(server.url)


@pytest.fixture
def config() -> Config:
    from gateway.config.load import load_config
    from tests.first_run.process import ROOT

    return load_config(ROOT, env={})


def test_in_flight_is_reserved_then_used_and_headers_agree(config, store_url) -> None:
    async def scenario() -> None:
        async with metered(config, store_url, clock=Clock()) as (meter, _):
            first = await meter.admit(request(config, prompt=10, max_tokens=300, request_id="a"))
            second = await meter.admit(request(config, prompt=40, max_tokens=300, request_id="b"))
            view = await meter.users.quota_view("alice", config.tiers["free"])
            tokens = view["capabilities"]["text_generation"]["tokens"]
            requests = view["capabilities"]["text_generation"]["requests"]
            assert tokens == {"limit": 10_000, "used": 0, "reserved": 650, "remaining": 9_350}
            assert requests == {"limit": 50, "used": 0, "reserved": 2, "remaining": 48}
            # the second admission's header: its own and the first's reservation held
            assert second.headers["x-ratelimit-remaining-tokens"] == "9350"
            assert second.headers["x-ratelimit-remaining-requests"] == "48"

            meter.finish(first, ok(10, 20))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            tokens = view["capabilities"]["text_generation"]["tokens"]
            assert tokens == {"limit": 10_000, "used": 30, "reserved": 340, "remaining": 9_630}
            meter.finish(second, ok(40, 10))
            await meter.settled()
            view = await meter.users.quota_view("alice", config.tiers["free"])
            tokens = view["capabilities"]["text_generation"]["tokens"]
            assert tokens == {"limit": 10_000, "used": 80, "reserved": 0, "remaining": 9_920}
            assert view["budgets"]["user"]["day"]["reserved_usd"] == 0

    run(scenario())
