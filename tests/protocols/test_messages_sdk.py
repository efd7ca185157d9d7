"""POST /v1/messages through the anthropic SDK, translated to chat completions for the mock."""

from __future__ import annotations

import base64

import anthropic
import httpx
import pytest
from pydantic import BaseModel

from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream
from tests.protocols.conftest import usage_records

PNG = base64.b64encode(b"\x89PNG fake").decode()
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def client(gw: RunningGateway, *, bearer: bool = False) -> anthropic.Anthropic:
    if bearer:
        return anthropic.Anthropic(base_url=gw.url, auth_token=gw.key(), max_retries=0)
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.key(), max_retries=0)


@pytest.mark.parametrize("bearer", [False, True])
def test_text(gateway: RunningGateway, upstream: MockUpstream, bearer: bool) -> None:
    message = client(gateway, bearer=bearer).messages.create(
        model="ok",
        max_tokens=64,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "How are you?"},
        ],
        stop_sequences=["END"],
        metadata={"user_id": "end-user-7"},
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},  # not in this SDK's signature
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == "Hello from mock/ok w4 w5"
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 5)
    assert upstream.requests[-1].json == {
        "model": "mock/ok",
        "max_tokens": 64,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": "How are you?"},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END"],
        "user": "end-user-7",
    }
    [record] = usage_records(gateway, "free", 1)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (11, 5)


def test_indicators_and_fallback(gateway: RunningGateway) -> None:
    raw = client(gateway).messages.with_raw_response.create(
        model="code", max_tokens=20, messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-gateway-model"] == "ok"  # fail-503 answered 503 twice
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-tier"] == "free"
    assert raw.parse().content[0].text == "Hello from mock/ok w4 w5"  # type: ignore[union-attr]


def test_images_base64_and_url(gateway: RunningGateway, upstream: MockUpstream) -> None:
    client(gateway).messages.create(
        model="vision-ok",
        max_tokens=20,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                ],
            }
        ],
    )
    assert upstream.requests[-1].json["messages"][0]["content"] == [
        {"type": "text", "text": "Compare"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]


def test_tools_over_two_turns(gateway: RunningGateway, upstream: MockUpstream) -> None:
    sdk = client(gateway)
    question = {"role": "user", "content": "Weather in Paris?"}
    first = sdk.messages.create(
        model="smart",
        max_tokens=100,
        # strict is carried; the two hints are accepted and not forwarded
        tools=[
            {
                **WEATHER,
                "strict": True,
                "cache_control": {"type": "ephemeral"},
                "eager_input_streaming": True,
            }
        ],  # type: ignore[list-item]
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        messages=[question],  # type: ignore[list-item]
    )
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"city": "Paris"}
    sent = upstream.requests[-1].json
    assert sent["tool_choice"] == "required" and sent["parallel_tool_calls"] is False
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["input_schema"],
                "strict": True,
            },
        }
    ]
    second = sdk.messages.create(
        model="smart",
        max_tokens=100,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[
            question,  # type: ignore[list-item]
            {"role": "assistant", "content": [use.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "22C"},
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert upstream.requests[-1].json["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": use.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": use.id, "content": "22C"},
    ]


def test_stream_text(gateway: RunningGateway) -> None:
    with client(gateway).messages.stream(
        model="ok", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "content_block_stop" in kinds
    assert final.content[0].type == "text"
    assert final.content[0].text == "Hello from mock/ok w4 w5"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 5)


def test_stream_tool_use_deltas_as_they_come(gateway: RunningGateway) -> None:
    raw = httpx.post(
        f"{gateway.base_url}/messages",
        headers={"x-api-key": gateway.key(), "anthropic-version": "2023-06-01"},
        json={
            "model": "smart",
            "max_tokens": 50,
            "stream": True,
            "tools": [WEATHER],
            "messages": [{"role": "user", "content": "Weather?"}],
        },
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert "event: ping" in raw.text
    assert raw.text.count('"type":"input_json_delta"') == 3
    with client(gateway).messages.stream(
        model="smart",
        max_tokens=50,
        tools=[WEATHER],  # type: ignore[list-item]
        messages=[{"role": "user", "content": "Weather?"}],
    ) as stream:
        final = stream.get_final_message()
    [use] = final.content
    assert use.type == "tool_use" and use.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 7


def test_stream_failure_is_an_error_event(gateway: RunningGateway) -> None:
    with (
        pytest.raises(anthropic.APIStatusError),
        client(gateway).messages.stream(
            model="drop", max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
        ) as stream,
    ):
        list(stream)


def test_cut_by_max_tokens(gateway: RunningGateway) -> None:
    turn = [{"role": "user", "content": "Hi"}]
    message = client(gateway).messages.create(model="cut", max_tokens=2, messages=turn)  # type: ignore[arg-type]
    assert message.stop_reason == "max_tokens" and message.content[0].text == "Hello from"  # type: ignore[union-attr]
    with client(gateway).messages.stream(model="cut", max_tokens=2, messages=turn) as stream:  # type: ignore[arg-type]
        final = stream.get_final_message()
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 2


class City(BaseModel):
    city: str
    population: int


def test_parse_with_pydantic(gateway: RunningGateway, upstream: MockUpstream) -> None:
    parsed = client(gateway).messages.parse(
        model="smart",
        max_tokens=50,
        messages=[{"role": "user", "content": "A city?"}],
        output_format=City,
        extra_body={"cache_control": {"type": "ephemeral"}},  # accepted, not forwarded
    )
    assert parsed.parsed_output == City(city="Paris", population=3)
    sent = upstream.requests[-1].json
    form = sent["response_format"]
    assert form["type"] == "json_schema" and form["json_schema"]["strict"] is True
    assert form["json_schema"]["schema"]["required"] == ["city", "population"]
    assert "cache_control" not in sent


def test_errors_in_anthropic_shape(gateway: RunningGateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as raised:
        anthropic.Anthropic(
            base_url=gateway.url, api_key="sk-wrong", max_retries=0
        ).messages.create(model="ok", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert raised.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "Invalid API key."},
    }
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(gateway).messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_count_tokens_estimate(gateway: RunningGateway) -> None:
    raw = client(gateway).messages.with_raw_response.count_tokens(
        model="ok", messages=[{"role": "user", "content": "Hello there, how are you?"}]
    )
    assert raw.parse().input_tokens > 0
    assert raw.headers["x-gateway-token-count"] == "estimate; characters/4"
    answer = httpx.post(
        f"{gateway.base_url}/messages/count_tokens",
        headers={"x-api-key": "sk-wrong"},
        json={"model": "ok", "messages": []},
    )
    assert answer.status_code == 401 and answer.json()["type"] == "error"
