"""Claude models through /v1/chat/completions with the openai SDK, against a mock Messages API."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.providers.conftest import CLAUDE_KEY

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def gw(start_providers):
    return start_providers(
        {
            "text": ["claude", "claude-tools", "claude-cache", "claude-mid"],
            "code": ["claude-over", "ok"],
            "vision": ["fail-503", "claude"],
            "moderation": ["claude-rl"],
        }
    )


@pytest.fixture
def client(gw):
    with openai.OpenAI(base_url=gw.base_url, api_key=gw.key("free"), max_retries=0) as client:
        yield client


def usage_records(gw):
    response = httpx.get(
        gw.base_url + "/usage",
        params={"from": "2020-01-01", "to": "2100-01-01"},
        headers={"authorization": f"Bearer {gw.key('free')}"},
    )
    return response.json()["data"]


def test_request_translated_to_the_messages_api(client, anthropic):
    image = "data:image/png;base64,iVBORw0KGgo="
    client.chat.completions.create(
        model="claude",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "toolu_9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_9", "content": "rainy"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and this?"},
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
                ],
            },
        ],
        max_tokens=50,
        stop=["END"],
        temperature=0.3,
        top_p=0.9,
        tools=TOOLS,
        tool_choice="required",
    )
    sent, headers = anthropic.requests[-1], anthropic.headers[-1]
    assert headers["x-api-key"] == CLAUDE_KEY and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers
    assert sent["model"] == "claude-ok" and sent["max_tokens"] == 50
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["stop_sequences"] == ["END"]
    assert sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": TOOLS[0]["function"]["parameters"],
        }
    ]
    assert sent["tool_choice"] == {"type": "any"}
    roles = [m["role"] for m in sent["messages"]]
    assert roles == ["user", "assistant", "user"]  # the tool result and next turn merged
    assert sent["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Oslo"}}
    ]
    last = sent["messages"][2]["content"]
    assert last[0] == {"type": "tool_result", "tool_use_id": "toolu_9", "content": "rainy"}
    assert last[1] == {"type": "text", "text": "and this?"}
    assert last[2]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "iVBORw0KGgo=",
    }
    assert last[3]["source"] == {"type": "url", "url": "https://x.test/a.jpg"}


def test_non_streamed_answer_and_usage(client, gw):
    raw = client.chat.completions.with_raw_response.create(
        model="claude", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello from Claude"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 7
    assert raw.headers["x-gateway-provider"] == "claude"
    records = usage_records(gw)
    assert records and records[-1]["prompt_tokens"] == 11
    assert records[-1]["completion_tokens"] == 7


def test_non_streamed_tool_calls(client):
    completion = client.chat.completions.create(
        model="claude-tools", messages=[{"role": "user", "content": "Paris?"}], tools=TOOLS
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    call = choice.message.tool_calls[0]
    assert call.id == "toolu_01" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}


def test_json_schema_response_format_is_a_structured_output(client, anthropic):
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    completion = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "A city?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema}},
    )
    assert json.loads(completion.choices[0].message.content) == {"city": "Paris"}
    assert anthropic.requests[-1]["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


def test_strict_tools_stay_strict(client, anthropic):
    strict = [{**TOOLS[0], "function": {**TOOLS[0]["function"], "strict": True}}]
    client.chat.completions.create(
        model="claude-tools", messages=[{"role": "user", "content": "Paris?"}], tools=strict
    )
    assert anthropic.requests[-1]["tools"][0]["strict"] is True


def test_streamed_text_with_usage(client):
    stream = client.chat.completions.create(
        model="claude",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from Claude"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.prompt_tokens == 11 and chunks[-1].usage.completion_tokens == 7


def test_streamed_without_usage_asked_drops_the_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    )
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)


def test_streamed_tool_call_arguments_arrive_in_pieces(client):
    stream = client.chat.completions.create(
        model="claude-tools",
        messages=[{"role": "user", "content": "Paris?"}],
        tools=TOOLS,
        stream=True,
    )
    name, arguments, ids, finish = "", "", set(), None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            assert call.index == 0
            ids.add(call.id) if call.id else None
            name += call.function.name or ""
            arguments += call.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert ids == {"toolu_01"} and name == "get_weather" and finish == "tool_calls"
    assert json.loads(arguments) == {"city": "Paris", "unit": "c"}


def test_prompt_cache_usage_counted(client, gw):
    completion = client.chat.completions.create(
        model="claude-cache", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.usage.prompt_tokens == 11 + 100 + 1000
    assert completion.usage.prompt_tokens_details.cached_tokens == 1000
    assert usage_records(gw)[-1]["prompt_tokens"] == 1111


def test_overloaded_falls_back_to_the_openai_compatible_model(client, anthropic):
    raw = client.chat.completions.with_raw_response.create(
        model="code", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.headers["x-gateway-model"] == "ok" and raw.headers["x-gateway-fallback"] == "true"
    assert len([r for r in anthropic.requests if r["model"] == "claude-overloaded"]) == 2


def test_openai_compatible_failure_falls_back_to_claude(client):
    raw = client.chat.completions.with_raw_response.create(
        model="vision", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    assert raw.headers["x-gateway-model"] == "claude"
    assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)


def test_rate_limit_error_maps_to_429(client):
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(
            model="claude-rl", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["type"] == "rate_limit_error"


def test_error_event_mid_stream_reaches_the_client(client):
    stream = client.chat.completions.create(
        model="claude-mid", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    with pytest.raises(openai.APIError, match="Overloaded"):
        list(stream)


def test_error_event_mid_stream_is_the_only_error_event(gw):
    """The relay adds no 'ended before complete' event after the upstream's own error."""
    response = httpx.post(
        gw.base_url + "/chat/completions",
        headers={"authorization": f"Bearer {gw.key('free')}"},
        json={
            "model": "claude-mid",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
    )
    errors = [e for e in response.text.split("\n\n") if e.startswith('data: {"error"')]
    assert len(errors) == 1 and "Overloaded" in errors[0]
