"""POST /v1/responses through the openai SDK, translated to chat completions for the mock."""

from __future__ import annotations

import base64

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream
from tests.protocols.conftest import usage_records

PNG = base64.b64encode(b"\x89PNG fake").decode()
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


def client(gw: RunningGateway, tier: str = "free") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key(tier), max_retries=0)


def test_text(gateway: RunningGateway, upstream: MockUpstream) -> None:
    response = client(gateway).responses.create(
        model="ok",
        input="Hello there",
        instructions="Be brief.",
        max_output_tokens=50,
        temperature=0.2,
        top_p=0.9,
        metadata={"tags": "bridge"},
        user="end-user-1",
    )
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed"
    assert response.output_text == "Hello from mock/ok w4 w5"
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (6, 5)
    assert response.usage.total_tokens == 11
    assert response.instructions == "Be brief." and response.metadata == {"tags": "bridge"}
    sent = upstream.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.json == {
        "model": "mock/ok",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"tags": "bridge"},
        "user": "end-user-1",
        "max_tokens": 50,
    }
    [record] = usage_records(gateway, "free", 1)
    assert record["model"] == "ok" and record["tags"] == ["bridge"]
    assert (record["prompt_tokens"], record["completion_tokens"]) == (6, 5)


def test_indicators_and_fallback(gateway: RunningGateway) -> None:
    raw = client(gateway).responses.with_raw_response.create(model="code", input="hi")
    assert raw.headers["x-gateway-model"] == "ok"  # fail-503 answered 503 twice
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-tier"] == "free"
    assert raw.parse().output_text == "Hello from mock/ok w4 w5"


def test_image_input(gateway: RunningGateway, upstream: MockUpstream) -> None:
    url = f"data:image/png;base64,{PNG}"
    response = client(gateway).responses.create(
        model="vision-ok",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "What is this?"},
                    {"type": "input_image", "image_url": url, "detail": "low"},
                ],
            }
        ],
    )
    assert response.status == "completed"
    assert upstream.requests[-1].json["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
            ],
        }
    ]


def test_function_tools_over_two_turns(gateway: RunningGateway, upstream: MockUpstream) -> None:
    openai_client = client(gateway)
    first = openai_client.responses.create(
        model="smart",
        input="Weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id.startswith("call_mock_") and call.arguments == '{"city": "Paris"}'
    sent = upstream.requests[-1].json
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The weather in a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    second = openai_client.responses.create(
        model="smart",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22C, sunny"}],
        tools=[WEATHER],
    )
    assert second.previous_response_id == first.id
    assert second.output_text.startswith("Hello from mock/smart")
    assert upstream.requests[-1].json["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.call_id, "content": "22C, sunny"},
    ]


def test_function_tools_replaying_the_output_items(
    gateway: RunningGateway, upstream: MockUpstream
) -> None:
    """The SDK's usual loop without stored state: the answer's items go back as input."""
    sdk = client(gateway)
    question = {"role": "user", "content": "Weather in Paris?"}
    first = sdk.responses.create(model="smart", input=[question], tools=[WEATHER], store=False)  # type: ignore[list-item]
    [call] = first.output
    assert call.type == "function_call"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "22C"}
    second = sdk.responses.create(
        model="smart",
        input=[question, *first.output, output],  # type: ignore[list-item]
        tools=[WEATHER],  # type: ignore[list-item]
        store=False,
    )
    assert second.output_text.startswith("Hello from mock/smart")
    assert [m["role"] for m in upstream.requests[-1].json["messages"]] == [
        "user",
        "assistant",
        "tool",
    ]
    thanks = {"role": "user", "content": "Thanks"}
    history = [question, *first.output, output, *second.output, thanks]
    sdk.responses.create(model="smart", input=history, store=False)  # type: ignore[arg-type]
    replayed = upstream.requests[-1].json["messages"][3]
    assert replayed == {"role": "assistant", "content": second.output_text}


def test_stream_text(gateway: RunningGateway) -> None:
    with client(gateway).responses.stream(model="ok", input="Hi") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds.count("response.output_text.delta") == 5
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_text == "Hello from mock/ok w4 w5"
    assert final.usage is not None and final.usage.output_tokens == 5
    assert usage_records(gateway, "free", 1)[0]["completion_tokens"] == 5


def test_stream_function_call_arguments_as_they_come(gateway: RunningGateway) -> None:
    with client(gateway).responses.stream(
        model="smart", input="Weather?", tools=[WEATHER]
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert deltas == ['{"cit', 'y": "', 'Paris"}']  # the upstream's three pieces, unbuffered
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert done.arguments == '{"city": "Paris"}'
    [call] = final.output
    assert call.type == "function_call" and call.arguments == '{"city": "Paris"}'
    assert final.usage is not None and final.usage.output_tokens == 7


def test_stream_failure_mid_way(gateway: RunningGateway) -> None:
    with client(gateway).responses.stream(model="drop", input="Hi") as stream:
        events = list(stream)
    assert events[-1].type == "response.failed"
    assert events[-1].response.status == "failed"
    assert events[-1].response.error is not None


class City(BaseModel):
    city: str
    population: int


def test_parse_with_pydantic(gateway: RunningGateway, upstream: MockUpstream) -> None:
    parsed = client(gateway).responses.parse(model="smart", input="A city?", text_format=City)
    assert parsed.output_parsed == City(city="Paris", population=3)
    form = upstream.requests[-1].json["response_format"]
    assert form["type"] == "json_schema" and form["json_schema"]["name"] == "City"
    assert form["json_schema"]["strict"] is True


def test_json_object(gateway: RunningGateway, upstream: MockUpstream) -> None:
    response = client(gateway).responses.create(
        model="smart", input="JSON please", text={"format": {"type": "json_object"}}
    )
    assert response.output_text == '{"ok": true}'
    assert upstream.requests[-1].json["response_format"] == {"type": "json_object"}


def test_length_is_incomplete(gateway: RunningGateway) -> None:
    sdk = client(gateway)
    response = sdk.responses.create(model="cut", input="Hi", max_output_tokens=2)
    assert response.status == "incomplete" and response.output_text == "Hello from"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    with sdk.responses.stream(model="cut", input="Hi", max_output_tokens=2) as stream:
        last = list(stream)[-1]
    assert last.type == "response.incomplete"
    assert last.response.incomplete_details is not None
    assert last.response.incomplete_details.reason == "max_output_tokens"
    assert sdk.responses.create(model="cut", input="Hi").status == "completed"


@pytest.mark.parametrize("stream", [False, True])
def test_store_get_delete_and_input_items(gateway: RunningGateway, stream: bool) -> None:
    openai_client = client(gateway)
    if stream:
        with openai_client.responses.stream(model="ok", input="Hi") as streamed:
            list(streamed)
            created = streamed.get_final_response()
    else:
        created = openai_client.responses.create(model="ok", input="Hi")
    fetched = openai_client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    items = openai_client.responses.input_items.list(created.id)
    assert [item.type for item in items.data] == ["message"]
    stranger = client(gateway, "pro")  # another user's: absent for every endpoint
    with pytest.raises(openai.NotFoundError):
        stranger.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.input_items.list(created.id)
    with pytest.raises(openai.NotFoundError):
        stranger.responses.delete(created.id)
    assert openai_client.responses.retrieve(created.id).id == created.id  # still there
    openai_client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)


@pytest.mark.parametrize("stream", [False, True])
def test_store_false_keeps_nothing(gateway: RunningGateway, stream: bool) -> None:
    openai_client = client(gateway)
    if stream:
        with openai_client.responses.stream(model="ok", input="Hi", store=False) as streamed:
            list(streamed)
            created = streamed.get_final_response()
    else:
        created = openai_client.responses.create(model="ok", input="Hi", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        openai_client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError) as raised:
        openai_client.responses.create(model="ok", input="Hi", previous_response_id=created.id)
    assert raised.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_previous_response_of_another_user_is_404(gateway: RunningGateway) -> None:
    created = client(gateway).responses.create(model="ok", input="Hi")
    with pytest.raises(openai.NotFoundError):
        client(gateway, "pro").responses.create(
            model="ok", input="Hi", previous_response_id=created.id
        )
