"""Tool-call argument deltas reach the client while the upstream is still mid-call: the
upstream holds the rest of the arguments until the client has seen the first piece."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.mock_upstream import MockUpstream
from tests.protocols.conftest import usage_records
from tests.protocols.gated_upstream import FIRST, REST, GatedUpstream, running_gated_upstream
from tests.support import DEFAULT_ROUTES, routes_doc

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def gated() -> Iterator[GatedUpstream]:
    with running_gated_upstream() as upstream:
        yield upstream


@pytest.fixture
def gateway(
    start_gateway: StartGateway, upstream: MockUpstream, gated: GatedUpstream
) -> RunningGateway:
    routes = routes_doc(upstream.base_url)
    mock, ok = routes["upstreams"]["mock"], routes["models"]["ok"]
    upstreams = {
        **routes["upstreams"],
        "gated": {**mock, "base_url": gated.url},
        "gated-anthropic": {**mock, "base_url": gated.url, "api": "anthropic"},
    }
    models = {
        **routes["models"],
        "gated": {**ok, "upstream": "gated", "model": "gated/tools"},
        "gated-claude": {**ok, "upstream": "gated-anthropic", "model": "claude-gated"},
    }
    # a model named in a request must be in one of the caller's chains
    tier = {"routes": {**DEFAULT_ROUTES, "text": ["ok", "gated", "gated-claude"]}}
    return start_gateway({"free": tier}, routes_extra={"upstreams": upstreams, "models": models})


# gated: an OpenAI-compatible upstream; gated-claude: api: anthropic (the Responses bridge goes
# through the Anthropic adapter, the Messages API is passed through natively)
MODELS = pytest.mark.parametrize("model", ["gated", "gated-claude"])


@MODELS
def test_responses_function_call_arguments(
    gateway: RunningGateway, gated: GatedUpstream, model: str
) -> None:
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key(), max_retries=0)
    held_when_seen: list[bool] = []
    with sdk.responses.stream(model=model, input="Weather?", tools=[WEATHER]) as stream:  # type: ignore[list-item]
        for event in stream:
            if event.type == "response.function_call_arguments.delta" and not held_when_seen:
                assert event.delta == FIRST
                held_when_seen.append(gated.held)
                gated.gate.set()
        final = stream.get_final_response()
    assert held_when_seen == [True]
    [call] = final.output
    assert call.type == "function_call" and call.arguments == FIRST + REST
    assert final.usage is not None
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 4)
    [record] = usage_records(gateway, "free", 1)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (9, 4)


@MODELS
def test_messages_input_json_delta(
    gateway: RunningGateway, gated: GatedUpstream, model: str
) -> None:
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key(), max_retries=0)
    held_when_seen: list[bool] = []
    tool = {"name": "get_weather", "input_schema": WEATHER["parameters"]}
    with sdk.messages.stream(
        model=model,
        max_tokens=50,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[tool],  # type: ignore[list-item]
    ) as stream:
        for event in stream:
            is_json = event.type == "content_block_delta" and event.delta.type == "input_json_delta"
            if is_json and not held_when_seen:
                assert event.delta.partial_json == FIRST  # type: ignore[union-attr]
                held_when_seen.append(gated.held)
                gated.gate.set()
        final = stream.get_final_message()
    assert held_when_seen == [True]
    [block] = final.content
    assert block.type == "tool_use" and block.input == {"city": "Paris"}
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (9, 4)
    [record] = usage_records(gateway, "free", 1)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (9, 4)
