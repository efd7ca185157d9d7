"""Quota- and budget-aware downgrade: a cheaper model of the chain or fewer tokens, not a 429."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.store.factory import create_store
from tests.support import DEFAULT_ROUTES, ThreadedServer, build_config, routes_doc, tiers_doc

MESSAGES = [{"role": "user", "content": "hello"}]
KEY = "sk-test-downgrade-0123456789"


@pytest.fixture
def serve(upstream) -> Iterator[Any]:
    servers: list[ThreadedServer] = []

    def start(tier: dict[str, Any], redis_url: str | None = None) -> tuple[str, Any]:
        routes = routes_doc(upstream.base_url)
        routes["models"]["ok"]["price"] = {"input": 100.0, "output": 100.0}  # dear
        routes["models"]["ok-b"]["price"] = {"input": 1.0, "output": 1.0}  # cheap
        config = build_config(
            routes, tiers_doc({"free": tier}), {"GATEWAY_KEYS": f"{KEY}=free:alice"}
        )
        runtime = Runtime(redis_url=redis_url)
        store = create_store(runtime.redis_url, config.settings)
        app = create_app(config, runtime, metrics=Metrics(), store=store)
        server = ThreadedServer(app).start()
        servers.append(server)
        return server.url, app

    yield start
    for server in servers:
        server.stop()


def tier(on_exhausted: str, **limits: Any) -> dict[str, Any]:
    return {
        "routes": {**DEFAULT_ROUTES, "text": ["ok", "ok-b"]},
        "on_exhausted": on_exhausted,
        **limits,
    }


def chat(url: str, max_tokens: int = 100) -> Any:
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="auto", messages=MESSAGES, max_tokens=max_tokens
    )


def records(url: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        response = httpx.get(
            url + "/v1/usage",
            params={"from": "2020-01-01", "to": "2100-01-01"},
            headers={"authorization": f"Bearer {KEY}"},
        )
        found: list[dict[str, Any]] = response.json().get("data", [])
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_free_user_with_300_tokens_left_gets_a_clamped_answer(serve, upstream) -> None:
    url, _ = serve(tier("downgrade", quotas={"text_generation": {"tokens_per_day": 300}}), None)
    raw = chat(url, max_tokens=1000)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-gateway-downgraded"] == "true"
    sent = upstream.requests[-1].json
    assert sent is not None and 0 < sent["max_tokens"] < 300


def test_the_budget_refuses_the_dear_model_so_the_cheap_one_answers(serve, redis) -> None:
    # 100 output tokens at $100/M = $0.01 > the $0.005 budget; at $1/M it fits
    url, _ = serve(tier("downgrade", budget={"usd_per_day": 0.005}), redis.url)
    raw = chat(url)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-gateway-downgraded"] == "true"
    assert raw.headers["x-gateway-model"] == "ok-b"
    assert raw.headers["x-gateway-fallback"] == "false"
    [record] = records(url)
    assert record["downgraded"] is True and record["model"] == "ok-b"
    metrics = httpx.get(url + "/metrics").text
    assert 'gateway_downgrades_total{model="ok-b",tier="free"} 1.0' in metrics


def test_with_no_cheaper_model_max_tokens_shrinks_to_the_budget_left(
    serve, redis, upstream
) -> None:
    # only the dear model ($100/M): 100 output tokens cost $0.01, the budget is $0.005
    only_dear = {**tier("downgrade", budget={"usd_per_day": 0.005}), "routes": {"text": ["ok"]}}
    url, _ = serve(only_dear, redis.url)
    raw = chat(url, max_tokens=100)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-gateway-downgraded"] == "true"
    assert raw.headers["x-gateway-model"] == "ok"
    sent = upstream.requests[-1].json
    assert sent is not None and 0 < sent["max_tokens"] < 50  # what $0.005 buys at $100/M


def test_reject_keeps_the_429(serve, redis) -> None:
    url, _ = serve(tier("reject", budget={"usd_per_day": 0.005}), redis.url)
    with pytest.raises(openai.RateLimitError) as info:
        chat(url)
    assert info.value.code == "budget_exceeded"


def test_when_nothing_fits_the_429_stays(serve, redis) -> None:
    url, _ = serve(tier("downgrade", budget={"usd_per_day": 0.0001}), redis.url)
    with pytest.raises(openai.RateLimitError) as info:
        chat(url)
    assert info.value.code == "budget_exceeded"
