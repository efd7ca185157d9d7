"""The demo upstream's choice of answer for a chat request (text, JSON or a tool call), and its
wire shape through the in-process transport, including malformed tools and formats."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import jsonschema
import pytest
from langchain_core.output_parsers import PydanticOutputParser
from pydantic import BaseModel

from gateway.providers.demo import DemoUpstream
from gateway.providers.demo_reply import DemoRequestError, chat_reply

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["query"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "clock"}}  # no parameters at all
USER = {"role": "user", "content": "Find the docs"}


class Pet(BaseModel):
    name: str
    legs: int


def test_tool_choices() -> None:
    auto = chat_reply({"messages": [USER], "tools": [LOOKUP, CLOCK]})
    assert auto.tool_call is not None and auto.tool_call.name == "lookup"
    assert auto.finish_reason == "tool_calls"
    jsonschema.validate(json.loads(auto.text), LOOKUP["function"]["parameters"])

    named = chat_reply(
        {
            "messages": [USER],
            "tools": [LOOKUP, CLOCK],
            "tool_choice": {"type": "function", "function": {"name": "clock"}},
        }
    )
    assert named.tool_call is not None and named.text == "{}"
    mentioned = chat_reply(
        {
            "messages": [{"role": "user", "content": "What does the CLOCK say?"}],
            "tools": [LOOKUP, CLOCK],
        }
    )
    assert mentioned.tool_call is not None and mentioned.tool_call.name == "clock"
    none = chat_reply({"messages": [USER], "tools": [LOOKUP], "tool_choice": "none"})
    assert none.tool_call is None and "demo upstream" in none.text
    with pytest.raises(DemoRequestError) as refused:
        chat_reply(
            {
                "messages": [USER],
                "tools": [LOOKUP],
                "tool_choice": {"type": "function", "function": {"name": "gone"}},
            }
        )
    assert refused.value.param == "tool_choice"


def test_after_a_tool_result_auto_answers_text_and_required_calls_again() -> None:
    first = chat_reply({"messages": [USER], "tools": [LOOKUP]})
    assert first.tool_call is not None
    call = {
        "id": first.tool_call.id,
        "type": "function",
        "function": {"name": "lookup", "arguments": first.text},
    }
    messages = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": first.tool_call.id, "content": "3 pages found"},
    ]
    answer = chat_reply({"messages": messages, "tools": [LOOKUP]})
    assert answer.tool_call is None and answer.finish_reason == "stop"
    assert answer.text.startswith("The lookup tool returned: 3 pages found")
    again = chat_reply({"messages": messages, "tools": [LOOKUP], "tool_choice": "required"})
    assert again.tool_call is not None and again.tool_call.id != first.tool_call.id


def test_json_object_reads_the_schema_or_the_keys_in_the_prompt() -> None:
    instructions = PydanticOutputParser(pydantic_object=Pet).get_format_instructions()
    system = {"role": "system", "content": instructions}  # holds an example schema, then Pet's
    pet = chat_reply({"messages": [system, USER], "response_format": {"type": "json_object"}})
    Pet.model_validate_json(pet.text)

    keys = {"role": "system", "content": 'Reply in JSON with the fields "city_name" and `zip`.'}
    named = chat_reply({"messages": [keys, USER], "response_format": {"type": "json_object"}})
    assert json.loads(named.text) == {"city_name": "demo city name", "zip": "demo zip"}

    plain = chat_reply({"messages": [USER], "response_format": {"type": "json_object"}})
    assert "demo upstream" in json.loads(plain.text)["answer"]


def test_json_schema_and_text_pieces() -> None:
    schema = {"name": "pet", "schema": Pet.model_json_schema(), "strict": True}
    pet = chat_reply(
        {"messages": [USER], "response_format": {"type": "json_schema", "json_schema": schema}}
    )
    Pet.model_validate_json(pet.text)
    assert all(len(piece) <= 4 for piece in pet.pieces)
    text = chat_reply({"messages": [USER], "max_tokens": 3})
    assert text.pieces == ("Hello", " from", " the") and text.finish_reason == "length"
    assert chat_reply({"messages": [USER]}).finish_reason == "stop"


@pytest.mark.parametrize(
    "extra",
    [{"tools": [LOOKUP]}, {"response_format": {"type": "json_object"}}],
)
def test_json_and_tool_calls_stop_at_max_tokens_as_a_model_does(extra: Any) -> None:
    whole = chat_reply({"messages": [USER], **extra})
    cut = chat_reply({"messages": [USER], "max_completion_tokens": 2, **extra})
    assert cut.pieces == whole.pieces[:2] and cut.finish_reason == "length"
    assert cut.tool_call == whole.tool_call


def post(payload: Any) -> httpx.Response:
    async def send() -> httpx.Response:
        transport = DemoUpstream()
        async with httpx.AsyncClient(transport=transport, base_url="http://demo/v1") as client:
            response = await client.post("/chat/completions", json=payload)
            await response.aread()
            return response

    return asyncio.run(send())


@pytest.mark.parametrize(
    "extra",
    [
        {"tools": "lookup"},
        {"tools": [None, 3, {"type": "function"}, {"function": "x"}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": [1]}}]},
        {"tools": [LOOKUP], "tool_choice": {"type": "function", "function": "lookup"}},
        {"tools": [LOOKUP], "tool_choice": 7},
        {"response_format": "json_object"},
        {"response_format": {"type": "json_schema", "json_schema": {"schema": "no"}}},
        {"response_format": {"type": "json_schema"}},
        {"messages": "hi", "response_format": {"type": "json_object"}},
        {"messages": [{"role": "tool", "content": {"not": "text"}}], "tools": [LOOKUP]},
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_malformed_tools_and_formats_still_get_a_well_formed_answer(
    extra: Any, stream: bool
) -> None:
    response = post({"model": "m", "messages": [USER], "stream": stream, **extra})
    assert response.status_code == 200
    if not stream:
        assert response.json()["choices"][0]["finish_reason"] in ("stop", "tool_calls")
        return
    events = [
        json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")
    ]
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "tool_calls")
    assert response.text.endswith("data: [DONE]\n\n")


def test_a_refused_tool_choice_is_an_openai_error() -> None:
    response = post(
        {
            "model": "m",
            "messages": [USER],
            "tools": [LOOKUP],
            "tool_choice": {"type": "function", "function": {"name": "gone"}},
        }
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == "tool_choice"
