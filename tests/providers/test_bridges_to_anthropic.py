"""The Responses and Messages bridges in front of an ``api: anthropic`` upstream: the request
goes chat → Messages through the Anthropic adapter, the answer back the same way."""

from __future__ import annotations

import base64

import anthropic
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import RunningGateway
from tests.providers.conftest import StartProviders
from tests.providers.mock_anthropic import MockAnthropic

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def gateway(start_providers: StartProviders) -> RunningGateway:
    return start_providers({"text": ["claude", "claude-tools", "claude-mid"]})


def responses_client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)


def test_responses_text(gateway: RunningGateway, anthropic: MockAnthropic) -> None:
    response = responses_client(gateway).responses.create(
        model="claude", input="Hi", instructions="Be brief.", max_output_tokens=30
    )
    assert response.output_text == "Hello from Claude"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    sent = anthropic.requests[-1]
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert sent["max_tokens"] == 30


def test_responses_tools_and_previous_response(
    gateway: RunningGateway, anthropic: MockAnthropic
) -> None:
    sdk = responses_client(gateway)
    first = sdk.responses.create(model="claude-tools", input="Weather?", tools=[WEATHER])  # type: ignore[list-item]
    assert [item.type for item in first.output] == ["message", "function_call"]
    call = first.output[1]
    assert call.type == "function_call" and call.call_id == "toolu_01"
    assert call.arguments == '{"city":"Paris","unit":"c"}'
    sdk.responses.create(
        model="claude",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "toolu_01", "output": "22C"}],
    )
    assert anthropic.requests[-1]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris", "unit": "c"},
                },
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "22C"}],
        },
    ]


def test_responses_image_input(gateway: RunningGateway, anthropic: MockAnthropic) -> None:
    png = base64.b64encode(b"\x89PNG fake").decode()
    response = responses_client(gateway).responses.create(
        model="claude",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": f"data:image/png;base64,{png}"},
                ],
            }
        ],
    )
    assert response.output_text == "Hello from Claude"
    assert anthropic.requests[-1]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": png},
                },
            ],
        }
    ]


class City(BaseModel):
    city: str
    population: int


def test_responses_parse_as_structured_output(
    gateway: RunningGateway, anthropic: MockAnthropic
) -> None:
    parsed = responses_client(gateway).responses.parse(
        model="claude", input="A city?", text_format=City
    )
    assert parsed.output_parsed == City(city="Paris", population=3)
    form = anthropic.requests[-1]["output_config"]["format"]
    assert form["type"] == "json_schema"
    assert form["schema"]["required"] == ["city", "population"]


def test_responses_json_object_refused_by_name(
    gateway: RunningGateway, anthropic: MockAnthropic
) -> None:
    sdk = responses_client(gateway)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="claude", input="JSON", text={"format": {"type": "json_object"}})
    assert raised.value.body["param"] == "text.format"  # type: ignore[index]
    assert anthropic.requests == []


def test_responses_service_tier_refused_by_name(
    gateway: RunningGateway, anthropic: MockAnthropic
) -> None:
    sdk = responses_client(gateway)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.responses.create(model="claude", input="Hi", service_tier="flex")
    assert raised.value.body["param"] == "service_tier"  # type: ignore[index]
    assert anthropic.requests == []
    sdk.responses.create(model="claude", input="Hi", service_tier="auto")
    assert "service_tier" not in anthropic.requests[-1]


def test_responses_json_object_dropped_with_a_header(
    start_providers: StartProviders, anthropic: MockAnthropic
) -> None:
    gw = start_providers({"text": ["claude"]}, tier={"unsupported_fields": "drop"})
    raw = responses_client(gw).responses.with_raw_response.create(
        model="claude", input="JSON", text={"format": {"type": "json_object"}}
    )
    assert raw.headers["x-gateway-dropped-fields"] == "text.format"
    assert raw.parse().output_text == "Hello from Claude"
    assert "output_config" not in anthropic.requests[-1]


def test_responses_stream_tool_arguments(gateway: RunningGateway) -> None:
    with responses_client(gateway).responses.stream(
        model="claude-tools",
        input="Weather?",
        tools=[WEATHER],  # type: ignore[list-item]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) == 2  # Anthropic's two input_json_deltas, relayed one by one
    assert final.output[-1].type == "function_call"
    assert final.output[-1].arguments == '{"city": "Paris", "unit": "c"}'
    assert final.usage is not None and final.usage.input_tokens == 11


def test_responses_stream_upstream_error(gateway: RunningGateway) -> None:
    with responses_client(gateway).responses.stream(model="claude-mid", input="Hi") as stream:
        events = list(stream)
    assert events[-1].type == "response.failed"


def test_messages_through_to_anthropic(gateway: RunningGateway, anthropic: MockAnthropic) -> None:
    sdk = anthropic_sdk(gateway)
    message = sdk.messages.create(
        model="claude-tools",
        max_tokens=50,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    with sdk.messages.stream(
        model="claude", max_tokens=50, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "Hello from Claude"


def anthropic_sdk(gw: RunningGateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=gw.key(), max_retries=0)
