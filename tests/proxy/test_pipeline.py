"""One request through the whole proxy pipeline (auth, body, route, quota, attempts, answer,
billing) against the mock upstream in process and the memory store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tests.proxy.harness import CLIENT_KEY, MOCK_KEY, USER, Proxy, proxy
from tests.support import DEFAULT_ROUTES


def chat(model: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi there"}], **extra}


def run(scenario: Callable[[Proxy], Awaitable[None]], **options: Any) -> None:
    async def main() -> None:
        async with proxy(**options) as running:
            await scenario(running)

    asyncio.run(main())


async def settled(running: Proxy, requests: int) -> dict[str, Any]:
    """The user's text quota view once ``requests`` requests are settled (billing runs after
    the answer is handed out)."""
    tier = running.gateway.config.tiers["free"]
    for _ in range(500):
        view = await running.gateway.meter.users.quota_view(USER, tier)
        counted: dict[str, Any] = view["capabilities"]["text_generation"]
        if counted["requests"]["used"] >= requests and not counted["requests"]["reserved"]:
            return counted
        await asyncio.sleep(0.01)
    raise AssertionError(f"not settled: {counted}")


def test_a_chat_answer_comes_back_whole_with_the_gateway_headers_and_is_billed() -> None:
    async def scenario(running: Proxy) -> None:
        answer = await running.post("/chat/completions", chat())
        assert answer.status == 200 and not answer.relayed
        usage = answer.json()["usage"]
        assert usage["completion_tokens"] == 5  # the mock answers five words by default
        assert answer.headers["x-gateway-model"] == "ok"
        assert answer.headers["x-gateway-upstream-model"] == "mock/ok"
        assert answer.headers["x-gateway-attempts"] == "1"
        counted = await settled(running, 1)
        assert counted["tokens"]["used"] == usage["total_tokens"]

    run(scenario)


def test_the_upstream_gets_the_configured_key_never_the_clients() -> None:
    async def scenario(running: Proxy) -> None:
        assert (await running.post("/chat/completions", chat())).status == 200
        [seen] = running.seen()
        assert seen.headers["authorization"] == f"Bearer {MOCK_KEY}"
        assert CLIENT_KEY not in orjson.dumps(seen.headers).decode()
        assert seen.model == "mock/ok"

    run(scenario)


def test_a_stream_is_relayed_chunk_by_chunk_to_its_done_line_and_billed() -> None:
    async def scenario(running: Proxy) -> None:
        answer = await running.post("/chat/completions", chat(stream=True))
        assert answer.status == 200 and answer.relayed
        events = [e for e in answer.body.split(b"\n\n") if e]
        assert events[-1] == b"data: [DONE]"
        text = "".join(
            orjson.loads(event.removeprefix(b"data: "))["choices"][0]["delta"].get("content", "")
            for event in events[:-1]
            if orjson.loads(event.removeprefix(b"data: "))["choices"]
        )
        assert text.startswith("Hello from mock/ok")
        assert (await settled(running, 1))["tokens"]["used"] > 0

    run(scenario)


def test_a_failing_model_falls_back_down_the_chain() -> None:
    routes = {**DEFAULT_ROUTES, "text": ["fail-500", "ok"]}

    async def scenario(running: Proxy) -> None:
        answer = await running.post("/chat/completions", chat("fail-500"))
        assert answer.status == 200, answer.body
        assert answer.headers["x-gateway-model"] == "ok"
        assert answer.headers["x-gateway-fallback"] == "true"
        assert [r.model for r in running.seen()] == ["mock/fail-500", "mock/fail-500", "mock/ok"]

    run(scenario, tiers={"free": {"routes": routes}})


def test_a_flaky_model_is_retried_before_any_fallback() -> None:
    async def scenario(running: Proxy) -> None:
        answer = await running.post("/chat/completions", chat("flaky"))
        assert answer.status == 200, answer.body
        assert answer.headers["x-gateway-attempts"] == "2"
        assert [r.model for r in running.seen()] == ["mock/flaky-1", "mock/flaky-1"]

    routes = {**DEFAULT_ROUTES, "text": ["flaky", "ok"]}
    run(scenario, tiers={"free": {"routes": routes}})


def test_the_clients_own_error_is_final_openai_shaped_and_not_retried() -> None:
    async def scenario(running: Proxy) -> None:
        answer = await running.post("/chat/completions", chat("bad-400"))
        assert answer.status == 400
        assert set(answer.error) == {"message", "type", "param", "code"}
        assert [r.model for r in running.seen()] == ["mock/bad-400"]

    routes = {**DEFAULT_ROUTES, "text": ["bad-400", "ok"]}
    run(scenario, tiers={"free": {"routes": routes}})


def test_refusals_before_the_upstream_are_openai_shaped_and_send_nothing() -> None:
    async def scenario(running: Proxy) -> None:
        cases = [
            (await running.post("/chat/completions", chat(), key=None), 401),
            (await running.post("/chat/completions", chat(), key="sk-wrong-0123456789"), 401),
            (await running.post("/chat/completions", b"{not json"), 400),
            (await running.post("/chat/completions", b"[]"), 400),
            (await running.post("/chat/completions", chat("no-such-model")), 404),
            (await running.post("/chat/completions", b"[" * 200 + b"]" * 200), 400),
        ]
        for answer, status in cases:
            assert answer.status == status, answer.body
            assert set(answer.error) == {"message", "type", "param", "code"}
            assert CLIENT_KEY not in answer.body.decode()
        assert running.seen() == []

    run(scenario)


def test_a_spent_quota_is_refused_with_429_before_the_upstream() -> None:
    tiers = {
        "free": {"routes": DEFAULT_ROUTES, "quotas": {"text_generation": {"requests_per_day": 1}}}
    }

    async def scenario(running: Proxy) -> None:
        assert (await running.post("/chat/completions", chat())).status == 200
        await settled(running, 1)
        refused = await running.post("/chat/completions", chat())
        assert refused.status == 429 and refused.error["type"]
        assert len(running.seen()) == 1

    run(scenario, tiers=tiers)


def test_embeddings_go_through_the_same_pipeline() -> None:
    async def scenario(running: Proxy) -> None:
        answer = await running.post("/embeddings", {"model": "embed", "input": ["a b", "c"]})
        assert answer.status == 200, answer.body
        assert len(answer.json()["data"]) == 2
        assert [r.path for r in running.seen()] == ["/v1/embeddings"]

    run(scenario)
