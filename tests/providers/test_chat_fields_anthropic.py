"""Chat completions fields the Anthropic adapter cannot carry, with the openai SDK: refused by
name before anything is sent or charged, dropped and named for a dropping tier, untouched for a
chain of OpenAI-compatible models only; the fields it carries still reach the Messages API."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from gateway.protocols.fields import CHAT_ANTHROPIC, Disposition
from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream
from tests.providers.conftest import StartProviders
from tests.providers.mock_anthropic import MockAnthropic

HI = [{"role": "user", "content": "Hi"}]
FUNCTION = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
# (field, a value the adapter cannot carry, the part the 400 names)
REFUSED: list[tuple[str, Any, str]] = [
    ("n", 2, "n"),
    ("logprobs", True, "logprobs"),
    ("top_logprobs", 3, "top_logprobs"),
    ("presence_penalty", 0.5, "presence_penalty"),
    ("frequency_penalty", -0.5, "frequency_penalty"),
    ("logit_bias", {"50256": -100}, "logit_bias"),
    ("seed", 7, "seed"),
    ("service_tier", "flex", "service_tier"),
    ("prediction", {"type": "content", "content": "Hi"}, "prediction"),
    ("audio", {"voice": "alloy", "format": "wav"}, "audio"),
    ("modalities", ["text", "audio"], "modalities"),
    ("web_search_options", {}, "web_search_options"),
    ("reasoning_effort", "low", "reasoning_effort"),
    ("verbosity", "low", "verbosity"),
    ("store", True, "store"),
    ("prompt_cache_retention", "24h", "prompt_cache_retention"),
    ("functions", [FUNCTION["function"]], "functions"),
    ("function_call", "auto", "function_call"),
    ("response_format", {"type": "json_object"}, "response_format"),
    ("tools", [FUNCTION, {"type": "custom", "custom": {"name": "sql"}}], "tools[1].type"),
    ("tool_choice", {"type": "allowed_tools", "allowed_tools": {}}, "tool_choice"),
    ("repetition_penalty", 1.1, "repetition_penalty"),  # not a chat field: the adapter drops it
    ("messages", [{"role": "user", "content": [{"type": "text", "text": "Hi"}, AUDIO]}],
     "messages[0].content[1].type"),
]  # fmt: skip


def client(gw: RunningGateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=gw.key(), max_retries=0)


@pytest.mark.parametrize(("field", "value", "named"), REFUSED, ids=[r[2] for r in REFUSED])
def test_a_field_the_adapter_cannot_carry_is_refused_by_name(
    start_providers: StartProviders,
    anthropic: MockAnthropic,
    upstream: MockUpstream,
    field: str,
    value: Any,
    named: str,
) -> None:
    # "ok" falls back to claude: the chain has a model behind the adapter
    gw = start_providers({"text": ["ok", "claude"]})
    with pytest.raises(openai.BadRequestError) as refused:
        client(gw).chat.completions.create(model="ok", messages=HI, extra_body={field: value})  # type: ignore[arg-type]
    error = refused.value.body
    assert isinstance(error, dict)
    assert error["param"] == named and error["type"] == "invalid_request_error"
    assert f"'{named}'" in error["message"] and "claude" in error["message"]
    assert anthropic.requests == [] and upstream.requests == []


def test_refusals_charge_no_quota(
    start_providers: StartProviders, anthropic: MockAnthropic
) -> None:
    quota = {"quotas": {"text_generation": {"requests_per_day": 1}}}
    gw = start_providers({"text": ["claude"]}, tier=quota)
    sdk = client(gw)
    for field, value, _ in REFUSED:
        with pytest.raises(openai.BadRequestError):
            sdk.chat.completions.create(model="claude", messages=HI, extra_body={field: value})  # type: ignore[arg-type]
    assert anthropic.requests == []
    answer = sdk.chat.completions.with_raw_response.create(model="claude", messages=HI)
    assert answer.headers["x-ratelimit-remaining-requests"] == "0"
    assert answer.parse().choices[0].message.content == "Hello from Claude"


def test_harmless_defaults_pass(start_providers: StartProviders, anthropic: MockAnthropic) -> None:
    gw = start_providers({"text": ["claude"]})
    client(gw).chat.completions.create(
        model="claude",
        messages=HI,
        n=1,
        logprobs=False,
        top_logprobs=0,
        presence_penalty=0,
        frequency_penalty=0.0,
        logit_bias={},
        store=False,
        service_tier="auto",
        modalities=["text"],
        response_format={"type": "text"},
    )
    sent = anthropic.requests[-1]
    assert set(sent) == {"model", "messages", "max_tokens"}


def test_carried_fields_still_reach_the_messages_api(
    start_providers: StartProviders, anthropic: MockAnthropic
) -> None:
    gw = start_providers({"text": ["claude-tools"]})
    answer = client(gw).chat.completions.create(
        model="claude-tools",
        messages=[{"role": "developer", "content": "Be brief."}, *HI],
        max_completion_tokens=33,
        stop=["END"],
        temperature=0.5,
        top_p=0.9,
        tools=[FUNCTION],  # type: ignore[list-item]
        tool_choice="required",
        parallel_tool_calls=False,
        user="u-1",
        safety_identifier="s-1",
        metadata={"tags": "team-a"},
        prompt_cache_key="k",
        extra_body={"top_k": 5, "purpose": "chat"},
    )
    assert answer.choices[0].message.tool_calls
    sent = anthropic.requests[-1]
    assert sent["max_tokens"] == 33 and sent["stop_sequences"] == ["END"]
    assert (sent["temperature"], sent["top_p"], sent["top_k"]) == (0.5, 0.9, 5)
    assert sent["tools"][0]["name"] == "get_weather"
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["metadata"] == {"user_id": "s-1"}
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    client(gw).chat.completions.create(
        model="claude-tools",
        messages=HI,
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema}},
    )
    assert anthropic.requests[-1]["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}
    }


def test_a_dropping_tier_answers_and_names_what_it_dropped(
    start_providers: StartProviders, anthropic: MockAnthropic
) -> None:
    gw = start_providers({"text": ["claude"]}, tier={"unsupported_fields": "drop"})
    custom = {"type": "custom", "custom": {"name": "sql"}}
    parts = [AUDIO, {"type": "text", "text": "Hi"}, AUDIO]
    raw = client(gw).chat.completions.with_raw_response.create(
        model="claude",
        messages=[{"role": "user", "content": parts}],  # type: ignore[list-item]
        seed=7,
        logprobs=True,
        response_format={"type": "json_object"},
        tools=[custom, FUNCTION, custom],  # type: ignore[list-item]
        extra_body={"repetition_penalty": 1.1},
    )
    assert raw.parse().choices[0].message.content == "Hello from Claude"
    dropped = raw.headers["x-gateway-dropped-fields"].split(", ")
    assert set(dropped) == {
        "seed", "logprobs", "response_format", "repetition_penalty", "tools[0].type",
        "tools[2].type", "messages[0].content[0].type", "messages[0].content[2].type",
    }  # fmt: skip
    sent = anthropic.requests[-1]
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]
    assert [tool["name"] for tool in sent["tools"]] == ["get_weather"]
    assert "output_config" not in sent
    stream = client(gw).chat.completions.with_raw_response.create(
        model="claude", messages=HI, n=3, stream=True
    )
    assert stream.headers["x-gateway-dropped-fields"] == "n"
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in stream.parse() if chunk.choices
    )
    assert text == "Hello from Claude"


def test_every_tool_dropped_takes_the_tool_choice_along(
    start_providers: StartProviders, anthropic: MockAnthropic
) -> None:
    gw = start_providers({"text": ["claude"]}, tier={"unsupported_fields": "drop"})
    raw = client(gw).chat.completions.with_raw_response.create(
        model="claude",
        messages=HI,
        tools=[{"type": "custom", "custom": {"name": "sql"}}],  # type: ignore[list-item]
        tool_choice="required",
    )
    assert raw.headers["x-gateway-dropped-fields"] == "tools[0].type, tool_choice"
    assert "tools" not in anthropic.requests[-1] and "tool_choice" not in anthropic.requests[-1]


def test_a_chain_without_the_adapter_gets_every_field_untouched(
    start_providers: StartProviders, anthropic: MockAnthropic, upstream: MockUpstream
) -> None:
    gw = start_providers({"text": ["ok", "claude"]}, tier={"unsupported_fields": "drop"})
    extra = {"seed": 7, "logprobs": True, "repetition_penalty": 1.1, "n": 2}
    raw = client(gw).chat.completions.with_raw_response.create(
        model="code-ok", messages=HI, response_format={"type": "json_object"}, extra_body=extra
    )
    assert raw.status_code == 200 and "x-gateway-dropped-fields" not in raw.headers
    sent = upstream.requests[-1].json
    assert sent is not None
    assert {key: sent[key] for key in extra} == extra
    assert sent["response_format"] == {"type": "json_object"}
    assert anthropic.requests == []


def test_the_table_covers_every_sdk_field() -> None:
    from openai.types.chat import completion_create_params

    params = completion_create_params.CompletionCreateParamsBase
    sdk = {name for cls in params.__mro__ for name in getattr(cls, "__annotations__", {})}
    assert sdk - set(CHAT_ANTHROPIC) == set()
    refused = {f for f, spec in CHAT_ANTHROPIC.items() if spec.disposition is Disposition.REFUSED}
    tested = {field for field, _, _ in REFUSED}
    assert refused - tested == {"prompt_cache_options", "moderation"}  # no SDK-typed value


def test_a_model_an_own_key_unlocks_is_checked_too(
    start_providers: StartProviders, anthropic: MockAnthropic
) -> None:
    # no chain of the tier has a model behind the adapter; a caller's own key unlocks one
    gw = start_providers({}, tier={"byok_models": {"claude": "any"}})
    own = {"x-upstream-api-key": "sk-ant-own-key-0123456789"}
    sdk = client(gw).with_options(default_headers=own)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.chat.completions.create(model="claude-own-ok", messages=HI, seed=7)
    assert refused.value.body["param"] == "seed"  # type: ignore[index]
    assert anthropic.requests == []
    sdk.chat.completions.create(model="claude-own-ok", messages=HI)
    assert anthropic.requests[-1]["model"] == "claude-own-ok"
