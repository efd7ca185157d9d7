"""Native pass-through: /v1/responses to a ``responses_api: true`` upstream and /v1/messages
to an ``api: anthropic`` one go as the client sent them (model rewritten), answers and streams
come back as the upstream gave them, metered from the upstream's own usage; a chain that
also holds chat-only models is bridged for those (fallback included)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream
from tests.providers.conftest import StartProviders
from tests.providers.mock_anthropic import MockAnthropic
from tests.providers.mock_responses import MockResponses
from tests.support import ThreadedServer

NATIVE_KEY = "sk-native-test-0123456789"


@pytest.fixture(scope="module")
def native_server() -> Iterator[tuple[MockResponses, ThreadedServer]]:
    mock = MockResponses()
    server = ThreadedServer(mock.app).start()
    yield mock, server
    server.stop()


@pytest.fixture
def native(native_server: tuple[MockResponses, ThreadedServer]) -> MockResponses:
    native_server[0].requests.clear()
    return native_server[0]


@pytest.fixture
def start(
    start_providers: StartProviders, native_server: tuple[MockResponses, ThreadedServer]
) -> StartProviders:
    def started(routes: dict[str, list[str]], **kwargs: Any) -> RunningGateway:
        upstream = {
            "base_url": native_server[1].url + "/v1",
            "api_key_env": "NATIVE_KEY",
            "responses_api": True,
            "first_byte_timeout_s": 2,
            "idle_timeout_s": 2,
        }
        models = {
            name: {"upstream": "native", "model": upstream_model, "modality": "text"}
            for name, upstream_model in {
                "gpt-native": "gpt-n",
                "gpt-native-fail": "gpt-fail",
                "gpt-native-cut": "gpt-cut",
            }.items()
        }
        models["ok-reason"] = {"upstream": "mock", "model": "mock/ok", "modality": "text"}
        models["ok-reason"]["reasoning"] = True
        models["claude-reason"] = {"upstream": "claude", "model": "claude-ok", "modality": "text"}
        models["claude-reason"]["reasoning"] = True
        return start_providers(
            routes,
            extra_upstreams={"native": upstream},
            extra_models=models,
            env={"NATIVE_KEY": NATIVE_KEY},
            **kwargs,
        )

    return started


def sdk(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)


def claude_sdk(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.key(), max_retries=0)


def records(gw: RunningGateway, count: int) -> list[dict[str, Any]]:
    """The caller's usage records, newest first, once ``count`` are in (billing is after)."""
    deadline = time.monotonic() + 5
    while True:
        answer = httpx.get(f"{gw.base_url}/usage", headers={"authorization": f"Bearer {gw.key()}"})
        found: list[dict[str, Any]] = answer.json()["data"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_responses_passed_through_with_fields_the_bridge_refuses(
    start: StartProviders, native: MockResponses
) -> None:
    gw = start({"text": ["gpt-native"]})
    client = sdk(gw)
    first = client.responses.create(
        model="gpt-native",
        input="Hi",
        reasoning={"effort": "high", "summary": "auto"},
        tools=[{"type": "web_search"}],
        max_output_tokens=40,
    )
    assert first.id == "resp_native_0001" and first.output_text == "Native hello"
    sent = native.requests[-1]
    assert sent["model"] == "gpt-n" and sent["input"] == "Hi"
    assert sent["reasoning"] == {"effort": "high", "summary": "auto"}
    assert sent["tools"] == [{"type": "web_search"}]
    assert sent["max_output_tokens"] == 40
    assert sent["store"] is False  # the gateway keeps the conversation itself
    record = records(gw, 1)[0]
    assert (record["prompt_tokens"], record["completion_tokens"]) == (13, 5)
    assert record["model"] == "gpt-native"

    client.responses.create(model="gpt-native", input="And?", previous_response_id=first.id)
    sent = native.requests[-1]
    assert "previous_response_id" not in sent
    assert [item.get("role") for item in sent["input"]] == ["user", "assistant", "user"]
    assert sent["input"][1]["content"][0]["text"] == "Native hello"
    assert all("id" not in item for item in sent["input"])
    assert client.responses.retrieve(first.id).output_text == "Native hello"


def test_responses_stream_relayed_and_metered(start: StartProviders, native: MockResponses) -> None:
    gw = start({"text": ["gpt-native"]})
    with sdk(gw).responses.stream(model="gpt-native", input="Hi") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 2
    assert final.output_text == "Native hello"
    assert native.requests[-1]["stream"] is True
    record = records(gw, 1)[0]
    assert (record["prompt_tokens"], record["completion_tokens"]) == (13, 5)
    assert record["status"] == 200


def test_native_stream_cut_ends_with_an_error_event(start: StartProviders) -> None:
    gw = start({"text": ["gpt-native-cut"]})
    with httpx.stream(
        "POST",
        f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "gpt-native-cut", "input": "Hi", "stream": True},
    ) as answer:
        body = answer.read()
    assert body.count(b"event: response.output_text.delta") == 2
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"event: error")
    assert records(gw, 1)[0]["status"] == 502


def test_mixed_chain_bridges_the_chat_targets(
    start: StartProviders, native: MockResponses, upstream: MockUpstream
) -> None:
    gw = start({"text": ["ok"], "code": ["gpt-native-fail", "ok"]})
    client = sdk(gw)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="code", input="Hi", tools=[{"type": "web_search"}])
    assert refused.value.body["param"] == "tools[0].type"  # type: ignore[index]
    assert native.requests == []
    answer = client.responses.create(model="code", input="Hi")
    assert native.requests and native.requests[-1]["model"] == "gpt-fail"
    assert answer.id.startswith("resp_") and answer.id != "resp_native_0001"  # translated
    assert upstream.requests[-1].json["messages"] == [{"role": "user", "content": "Hi"}]  # type: ignore[index]


def test_messages_passed_through_to_anthropic(
    start: StartProviders, anthropic: MockAnthropic
) -> None:
    gw = start({"text": ["claude", "claude-cache"]})
    client = claude_sdk(gw)
    message = client.messages.create(
        model="claude-cache",
        max_tokens=50,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "x"},
                    },
                    {"type": "text", "text": "Sum up"},
                ],
            }
        ],
    )
    assert message.id == "msg_01" and message.content[0].type == "text"
    sent = anthropic.requests[-1]
    assert sent["model"] == "claude-cache"
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent["messages"][0]["content"][0]["type"] == "document"
    record = records(gw, 1)[0]
    assert (record["prompt_tokens"], record["completion_tokens"]) == (1111, 7)

    with client.messages.stream(
        model="claude", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.id == "msg_01" and final.content[0].type == "text"
    assert "message_stop" in kinds
    assert anthropic.requests[-1]["stream"] is True
    assert records(gw, 2)[0]["completion_tokens"] == 7


def test_refused_by_default_named(start: StartProviders) -> None:
    gw = start({"text": ["ok"]})
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gw).responses.create(model="ok", input="Hi", reasoning={"effort": "low"})
    assert refused.value.body["param"] == "reasoning"  # type: ignore[index]
    assert "ok is not declared a reasoning model" in refused.value.body["message"]  # type: ignore[index]


def test_reasoning_refused_for_a_model_behind_the_anthropic_adapter(
    start: StartProviders, anthropic: MockAnthropic
) -> None:
    gw = start({"text": ["claude-reason"]})
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gw).responses.create(model="claude-reason", input="Hi", reasoning={"effort": "low"})
    assert refused.value.body["param"] == "reasoning"  # type: ignore[index]
    assert anthropic.requests == []


def test_reasoning_effort_carried_to_a_reasoning_model(
    start: StartProviders, upstream: MockUpstream
) -> None:
    gw = start({"text": ["ok-reason"]})
    answer = sdk(gw).responses.create(model="ok-reason", input="Hi", reasoning={"effort": "high"})
    assert upstream.requests[-1].json["reasoning_effort"] == "high"  # type: ignore[index]
    assert answer.reasoning is not None and answer.reasoning.effort == "high"


def test_tier_drops_with_a_warning_header(start: StartProviders, upstream: MockUpstream) -> None:
    gw = start({"text": ["ok"]}, tier={"unsupported_fields": "drop"})
    raw = sdk(gw).responses.with_raw_response.create(
        model="ok",
        input="Hi",
        tools=[{"type": "web_search"}],
        reasoning={"effort": "low"},
        background=False,
    )
    assert raw.headers["x-gateway-dropped-fields"] == "tools[0].type, reasoning"
    assert raw.parse().output_text
    sent = upstream.requests[-1].json
    assert sent is not None and "reasoning_effort" not in sent and not sent.get("tools")
    # an unknown field is never dropped: a typo stays a 400
    answer = httpx.post(
        f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "ok", "input": "Hi", "temprature": 0},
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "temprature"
    message = claude_sdk(gw).messages.with_raw_response.create(
        model="ok",
        max_tokens=20,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert message.headers["x-gateway-dropped-fields"] == "thinking"
    assert message.parse().content[0].type == "text"


def test_cached_apart_when_only_the_native_body_differs(
    start: StartProviders, native: MockResponses
) -> None:
    gw = start({"text": ["gpt-native"]}, tier={"cache": {"text": {"ttl_s": 60}}})
    client = sdk(gw)
    including = client.responses.with_raw_response.create(
        model="gpt-native", input="Hi", include=["reasoning.encrypted_content"]
    )
    plain = client.responses.with_raw_response.create(model="gpt-native", input="Hi")
    again = client.responses.with_raw_response.create(model="gpt-native", input="Hi")
    caching = [r.headers["x-gateway-cache"] for r in (including, plain, again)]
    assert caching == ["miss", "miss", "hit"]
    assert len(native.requests) == 2
    assert "gateway_native_body_sha256" not in native.requests[-1]
    assert again.parse().output_text == "Native hello"
