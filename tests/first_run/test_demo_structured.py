"""Tools and structured output against `gateway serve --demo`, through the clients people try
first: LangChain's `with_structured_output` (all three methods) and `bind_tools`, and the
openai SDK's tool calls (streamed and not) and `chat.completions.parse`."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.output_parsers import PydanticOutputParser
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from openai import OpenAI
from pydantic import BaseModel, Field

from tests.first_run.test_demo import served


class Mood(enum.Enum):
    HAPPY = "happy"
    GRUMPY = "grumpy"


class Ingredient(BaseModel):
    name: str
    grams: int = Field(ge=1, le=1000)


class Recipe(BaseModel):
    """A recipe the model proposes."""

    title: str = Field(description="The recipe's name")
    servings: int = Field(gt=0, lt=13)
    vegetarian: bool
    mood: Mood
    ingredients: list[Ingredient] = Field(min_length=2)
    rating: float | None = Field(default=None, ge=0, le=5)


@tool
def get_weather(city: str, days: int = 1) -> str:
    """The weather forecast for a city."""
    return f"Sunny in {city} for {days} days"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather forecast for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}},
    },
}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    shell, base_url = served(tmp_path_factory.mktemp("demo"), "--demo")
    try:
        yield base_url + "/v1", shell.dev_key()
    finally:
        shell.stop()


@pytest.fixture(scope="module")
def client(demo: tuple[str, str]) -> OpenAI:
    return OpenAI(base_url=demo[0], api_key=demo[1], max_retries=0)


@pytest.fixture(scope="module")
def chat(demo: tuple[str, str]) -> ChatOpenAI:
    return ChatOpenAI(base_url=demo[0], api_key=demo[1], model="text", max_retries=0)


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_with_structured_output_returns_a_valid_instance(chat: ChatOpenAI, method: str) -> None:
    structured = chat.with_structured_output(Recipe, method=method, include_raw=True)
    result: Any = structured.invoke("Suggest a pasta recipe.")
    assert result["parsing_error"] is None
    recipe = result["parsed"]
    assert isinstance(recipe, Recipe) and len(recipe.ingredients) >= 2
    raw = result["raw"]
    assert raw.response_metadata["model_provider"] == "openai"
    assert raw.usage_metadata["output_tokens"] > 0


def test_with_structured_output_json_mode_follows_the_format_instructions(
    chat: ChatOpenAI,
) -> None:
    instructions = PydanticOutputParser(pydantic_object=Recipe).get_format_instructions()
    structured = chat.with_structured_output(Recipe, method="json_mode")
    recipe = structured.invoke([("system", instructions), ("user", "Suggest a pasta recipe.")])
    assert isinstance(recipe, Recipe)


def test_json_mode_with_the_keys_named_in_the_prompt(chat: ChatOpenAI) -> None:
    class AnswerWithJustification(BaseModel):
        answer: str
        justification: str

    structured = chat.with_structured_output(AnswerWithJustification, method="json_mode")
    answer = structured.invoke(
        "Answer the following question. Make sure to return a JSON blob with keys 'answer'"
        " and 'justification'.\n\nWhat's heavier a pound of bricks or a pound of feathers?"
    )
    assert isinstance(answer, AnswerWithJustification)


# langchain-openai's streamed structured output model_dumps the SDK's parsed events, which
# type `parsed` as None: a client-side warning whatever the server (langchain-ai/langchain#35538).
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
def test_streamed_structured_output(chat: ChatOpenAI) -> None:
    parts = list(chat.with_structured_output(Recipe, method="json_schema").stream("Pasta?"))
    assert isinstance(parts[-1], Recipe)


def test_bind_tools_and_an_agent_loop_that_ends(chat: ChatOpenAI) -> None:
    bound = chat.bind_tools([get_weather])
    messages: list[Any] = [HumanMessage("What is the weather in Paris?")]
    reply = bound.invoke(messages)
    (call,) = reply.tool_calls
    assert call["name"] == "get_weather"
    get_weather.args_schema.model_validate(call["args"])  # type: ignore[union-attr]
    messages += [reply, ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])]
    final = bound.invoke(messages)
    assert not final.tool_calls
    assert "Sunny in demo city" in final.content and "get_weather" in final.content

    streamed = None
    for chunk in chat.bind_tools([get_weather], tool_choice="any").stream("Weather?"):
        streamed = chunk if streamed is None else streamed + chunk
    assert streamed is not None and streamed.tool_calls[0]["name"] == "get_weather"
    get_weather.args_schema.model_validate(streamed.tool_calls[0]["args"])  # type: ignore[union-attr]


def test_a_tool_call_validates_against_the_tool_schema(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="text", messages=ASK, tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_a_streamed_tool_call_has_openais_delta_shape_and_honest_usage(client: OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="text",
            messages=ASK,
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    first = (deltas[0].tool_calls or [])[0]
    assert first.index == 0 and first.id and first.type == "function"
    assert first.function is not None and first.function.name == "get_weather"
    fragments = [
        d.tool_calls[0].function.arguments
        for d in deltas[1:]
        if d.tool_calls and d.tool_calls[0].function
    ]
    assert len(fragments) > 1 and all(
        d.tool_calls[0].id is None for d in deltas[1:] if d.tool_calls
    )
    arguments = json.loads("".join(f or "" for f in fragments))
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])  # type: ignore[index]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == len(fragments)
    whole = client.chat.completions.create(
        model="text", messages=ASK, tools=[WEATHER_TOOL], tool_choice="required"
    )
    assert whole.usage == usage  # the same count whether streamed or not


def test_tool_choice_picks_the_named_tool_and_none_answers_text(client: OpenAI) -> None:
    tools: Any = [WEATHER_TOOL, TIME_TOOL]
    named = client.chat.completions.create(
        model="text",
        messages=ASK,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert (named.choices[0].message.tool_calls or [])[0].function.name == "get_time"
    mentioned = client.chat.completions.create(
        model="text", messages=[{"role": "user", "content": "call get_time please"}], tools=tools
    )
    assert (mentioned.choices[0].message.tool_calls or [])[0].function.name == "get_time"
    text = client.chat.completions.create(
        model="text", messages=ASK, tools=tools, tool_choice="none"
    )
    assert text.choices[0].finish_reason == "stop"
    assert "demo upstream" in (text.choices[0].message.content or "")
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="text",
            messages=ASK,
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "missing"}},
        )
    assert refused.value.status_code == 400 and refused.value.param == "tool_choice"


def test_parse_with_a_pydantic_response_format_and_a_pydantic_tool(client: OpenAI) -> None:
    parsed = client.chat.completions.parse(model="text", messages=ASK, response_format=Recipe)
    assert isinstance(parsed.choices[0].message.parsed, Recipe)
    with_tool = client.chat.completions.parse(
        model="text", messages=ASK, tools=[openai.pydantic_function_tool(Recipe)]
    )
    (call,) = with_tool.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, Recipe)  # type: ignore[union-attr]


def test_json_object_and_json_schema_content_streams_in_pieces(client: OpenAI) -> None:
    schema = Recipe.model_json_schema()
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "recipe", "schema": schema, "strict": False},
    }
    chunks = list(
        client.chat.completions.create(
            model="text", messages=ASK, response_format=response_format, stream=True
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) > 10
    Recipe.model_validate_json("".join(pieces))
    plain = client.chat.completions.create(
        model="text", messages=ASK, response_format={"type": "json_object"}
    )
    assert isinstance(json.loads(plain.choices[0].message.content or ""), dict)
