"""Every field the bridges cannot carry answers 400 naming it, in each API's error shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.protocols.fields import MESSAGES, RESPONSES, Disposition
from tests.conftest import RunningGateway
from tests.mock_upstream import MockUpstream

# a value that matters for each refused top-level field
RESPONSES_REFUSED: dict[str, Any] = {
    "truncation": "auto",
    "background": True,
    "include": ["message.output_text.logprobs"],
    "top_logprobs": 3,
    "max_tool_calls": 2,
    "prompt": {"id": "pmpt_1"},
    "conversation": "conv_1",
    "prompt_cache_retention": "24h",
    "prompt_cache_options": {"mode": "explicit"},
    "context_management": [{"type": "compaction"}],
    "moderation": {"model": "omni-moderation-latest"},
}
MESSAGES_REFUSED: dict[str, Any] = {
    "service_tier": "standard_only",
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "container": "container_1",
    "mcp_servers": [{"type": "url", "url": "https://mcp.example", "name": "x"}],
    "context_management": {"edits": []},
    "diagnostics": {"previous_message_id": None},
    "inference_geo": "us",
    "speed": "fast",
}
# nested values refused by name: (field path named, body update)
RESPONSES_NESTED: list[tuple[str, dict[str, Any]]] = [
    ("tools[0].type", {"tools": [{"type": "web_search"}]}),
    ("tools[1].type", {"tools": [{"type": "function", "name": "f"}, {"type": "file_search"}]}),
    ("tools[0].type", {"tools": [{"type": "computer_use_preview"}]}),
    (
        "tools[0].defer_loading",
        {"tools": [{"type": "function", "name": "f", "defer_loading": True}]},
    ),
    ("tools[0].output_schema", {"tools": [{"type": "function", "name": "f", "output_schema": {}}]}),
    ("tool_choice", {"tool_choice": {"type": "web_search_preview"}}),
    ("reasoning", {"reasoning": {"effort": "high"}}),  # no model of the chain reasons
    ("reasoning.summary", {"reasoning": {"summary": "auto"}}),
    ("text.verbosity", {"text": {"verbosity": "low"}}),
    (
        "stream_options.include_obfuscation",
        {"stream": True, "stream_options": {"include_obfuscation": True}},
    ),
    ("input[0].type", {"input": [{"type": "reasoning", "summary": []}]}),
    ("input[0].type", {"input": [{"type": "item_reference", "id": "msg_1"}]}),
    (
        "input[0].content[0].type",
        {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
    ),
    (
        "input[0].content[0].file_id",
        {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
    ),
]
MESSAGES_NESTED: list[tuple[str, dict[str, Any]]] = [
    ("tools[0].type", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}),
    ("tools[0].input_examples", {"tools": [{"name": "f", "input_examples": [{"a": 1}]}]}),
    ("tools[0].defer_loading", {"tools": [{"name": "f", "defer_loading": True}]}),
    (
        "messages[0].content[0].type",
        {"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
    ),
    (
        "messages[0].content[0].type",
        {"messages": [{"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]}]},
    ),
    ("metadata.tenant", {"metadata": {"tenant": "x"}}),
    ("output_config.effort", {"output_config": {"effort": "high"}}),
]


def test_the_lists_cover_every_refused_field() -> None:
    refused = {n for n, f in RESPONSES.items() if f.disposition is Disposition.REFUSED}
    assert refused == set(RESPONSES_REFUSED)
    refused = {n for n, f in MESSAGES.items() if f.disposition is Disposition.REFUSED}
    assert refused == set(MESSAGES_REFUSED)


def _responses(gw: RunningGateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "ok", "input": "hi", **body},
    )


def _messages(gw: RunningGateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gw.base_url}/messages",
        headers={"x-api-key": gw.key(), "anthropic-version": "2023-06-01"},
        json={
            "model": "ok",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            **body,
        },
    )


@pytest.mark.parametrize(
    ("param", "body"),
    [*((name, {name: value}) for name, value in RESPONSES_REFUSED.items()), *RESPONSES_NESTED],
)
def test_responses_refuses_by_name(
    gateway: RunningGateway, upstream: MockUpstream, param: str, body: dict[str, Any]
) -> None:
    answer = _responses(gateway, body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and param in error["message"]
    assert error["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_responses_unknown_field(gateway: RunningGateway) -> None:
    answer = _responses(gateway, {"seed": 3})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "seed"


def test_responses_harmless_defaults_pass(gateway: RunningGateway) -> None:
    answer = _responses(
        gateway,
        {"truncation": "disabled", "background": False, "include": [], "reasoning": None},
    )
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("param", "body"),
    [*((name, {name: value}) for name, value in MESSAGES_REFUSED.items()), *MESSAGES_NESTED],
)
def test_messages_refuses_by_name(
    gateway: RunningGateway, upstream: MockUpstream, param: str, body: dict[str, Any]
) -> None:
    answer = _messages(gateway, body)
    assert answer.status_code == 400, answer.text
    document = answer.json()
    assert document["type"] == "error"
    assert document["error"]["type"] == "invalid_request_error"
    assert param in document["error"]["message"]
    assert upstream.requests == []


def test_messages_unknown_field_and_missing_max_tokens(gateway: RunningGateway) -> None:
    answer = _messages(gateway, {"frequency_penalty": 1})
    assert answer.status_code == 400 and "frequency_penalty" in answer.json()["error"]["message"]
    answer = _messages(gateway, {"max_tokens": None})
    assert answer.status_code == 400 and "max_tokens" in answer.json()["error"]["message"]
