"""Deployments of one model: least-loaded first, each with its own breaker, a failed one
retried on a sibling before the chain moves on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest

from gateway.app import create_app
from gateway.config.model import Model, Upstream
from gateway.config.runtime import Runtime
from gateway.observe.metrics import Metrics
from gateway.proxy.deployments import Balancer
from gateway.store.factory import create_store
from tests.mock_upstream import MockUpstream, running_mock_upstream
from tests.support import (
    DEFAULT_ROUTES,
    OTHER_KEY,
    ThreadedServer,
    build_config,
    routes_doc,
    tiers_doc,
)

MESSAGES = [{"role": "user", "content": "hello"}]
KEY = "sk-test-deployments-0123456789"


@pytest.fixture(scope="module")
def second() -> Iterator[MockUpstream]:
    with running_mock_upstream() as server:
        yield server


@pytest.fixture
def serve(upstream, second) -> Iterator[Any]:
    second.reset()
    servers: list[ThreadedServer] = []

    def start(model_a: str, model_b: str) -> str:
        routes = routes_doc(upstream.base_url)
        routes["upstreams"]["west"] = {**routes["upstreams"]["other"], "base_url": second.base_url}
        routes["models"]["dep"] = {
            "upstream": "mock",
            "model": model_a,
            "modality": "text",
            "deployments": [{"upstream": "west", "model": model_b}],
        }
        tiers = tiers_doc({"free": {"routes": {**DEFAULT_ROUTES, "text": ["dep", "ok-b"]}}})
        config = build_config(routes, tiers, {"GATEWAY_KEYS": f"{KEY}=free:alice"})
        store = create_store(None, config.settings)
        app = create_app(config, Runtime(), metrics=Metrics(), store=store)
        server = ThreadedServer(app).start()
        servers.append(server)
        return server.url + "/v1"

    yield start
    for server in servers:
        server.stop()


def chat(url: str) -> Any:
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    return client.chat.completions.with_raw_response.create(model="dep", messages=MESSAGES)


def test_two_deployments_share_the_load(serve, upstream, second) -> None:
    url = serve("mock/dep-a+slowfirst-0.2", "mock/dep-b+slowfirst-0.2")
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda _: chat(url), range(20)))
    seen = {raw.headers["x-gateway-deployment"] for raw in answers}
    assert seen == {"mock", "west"}
    assert all(raw.headers["x-gateway-model"] == "dep" for raw in answers)
    assert all(raw.headers["x-gateway-fallback"] == "false" for raw in answers)
    a, b = (
        len(upstream.requests_for("mock/dep-a+slowfirst-0.2")),
        len(second.requests_for("mock/dep-b+slowfirst-0.2")),
    )
    assert a + b == 20 and a >= 4 and b >= 4, (a, b)


def test_a_failing_deployment_is_retried_on_its_sibling_then_skipped(
    serve, upstream, second
) -> None:
    url = serve("mock/dep-a", "mock/fail-503")
    for _ in range(8):
        raw = chat(url)
        assert raw.headers["x-gateway-deployment"] == "mock"
        assert raw.headers["x-gateway-model"] == "dep"  # not the next model of the chain
    failed = len(second.requests_for("mock/fail-503"))
    assert 1 <= failed <= 3 * 2  # until its own breaker opened (3 failures, 2 tries each)
    assert len(upstream.requests_for("mock/ok-b")) == 0
    before = failed
    for _ in range(4):
        chat(url)
    assert len(second.requests_for("mock/fail-503")) == before  # skipped: its circuit is open


def test_a_deployments_own_key_is_redacted_from_errors(serve, second) -> None:
    url = serve("mock/auth-401", "mock/auth-401")  # 401 echoing the Authorization header
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    for _ in range(2):  # round robin: each deployment answers once
        with pytest.raises(openai.AuthenticationError) as info:
            client.chat.completions.create(model="dep", messages=MESSAGES)
        assert OTHER_KEY not in str(info.value.body) and OTHER_KEY not in info.value.message
    assert len(second.requests_for("mock/auth-401")) >= 1


def test_the_balancer_prefers_the_idle_and_the_fast() -> None:
    upstream = Upstream("u", "http://x", None)
    base = Model("m", upstream, "m", "text")
    a = Model("m", upstream, "m", "text", deployment="a")
    b = Model("m", Upstream("v", "http://y", None), "m", "text", deployment="b")
    model = Model("m", upstream, "m", "text", deployments=(a, b))
    balancer = Balancer()
    assert balancer.order(base) == (base,)
    assert {balancer.order(model)[0].deployment for _ in range(4)} == {"a", "b"}  # round robin
    balancer.end(a, balancer.begin(a) - 0.01, ok=True)  # a took 10 ms
    balancer.end(b, balancer.begin(b) - 0.5, ok=True)  # b took half a second
    assert balancer.order(model)[0] is a
    for _ in range(200):
        balancer.begin(a)  # a is busy now
    assert balancer.order(model)[0] is b
    assert balancer.inflight(a) == 200
    for _ in range(200):
        balancer.end(a, time.perf_counter(), ok=False)
    assert balancer.inflight(a) == 0 and balancer.order(model)[0] is b  # failed: penalised
