"""The translators alone: request bodies, answers and streams, without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.errors import InvalidRequest
from gateway.protocols import messages, responses
from gateway.protocols.chat_stream import ChatStreamReader, Failed, Finish, Text, Usage
from gateway.protocols.messages_stream import MessagesStream
from gateway.protocols.responses_answer import from_chat_completion
from gateway.protocols.responses_stream import ResponsesStream


def chat_of(body: dict[str, Any]) -> dict[str, Any]:
    responses.check_request(body)
    return responses.translate_request(body, []).chat


def test_responses_items_become_messages() -> None:
    chat = chat_of(
        {
            "model": "m",
            "input": [
                {"role": "developer", "content": "Rules."},
                {"type": "message", "role": "assistant", "content": [
                    {"type": "output_text", "text": "Let me look."}
                ]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1",
                 "output": [{"type": "input_text", "text": "one"}]},
                {"type": "function_call_output", "call_id": "c2", "output": "two"},
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
        }
    )  # fmt: skip
    assert chat["messages"] == [
        {"role": "system", "content": "Rules."},
        {
            "role": "assistant",
            "content": "Let me look.",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object"}},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": []}, "input"),
        ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"input": "x", "stream_options": {}}, "stream_options"),
        ({"input": "x", "store": "yes"}, "store"),
        ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {
                "input": [
                    {"role": "assistant", "content": [{"type": "input_image", "image_url": "u"}]}
                ]
            },
            "input[0].content[0].type",
        ),
        ({"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input[0].call_id"),
    ],
)
def test_responses_bad_input_names_the_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        chat_of({"model": "m", **body})
    assert raised.value.param == param


def test_responses_item_metadata_is_accepted_and_other_keys_refused() -> None:
    replayed = {
        "type": "message",
        "id": "msg_1",
        "status": "completed",
        "phase": "final_answer",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": "Hi.", "annotations": [], "logprobs": []},
        ],
    }
    question = {
        "role": "user",
        "content": [{"type": "input_text", "text": "Again?", "prompt_cache_breakpoint": {}}],
    }
    chat = chat_of({"model": "m", "input": [replayed, question]})
    assert chat["messages"] == [
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "Again?"},
    ]
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    for item, param in [
        ({**call, "namespace": "billing"}, "input[0].namespace"),
        (
            {**question, "content": [{"type": "input_text", "text": "x", "cache": 1}]},
            "input[0].content[0].cache",
        ),
        (
            {"type": "function_call_output", "call_id": "c", "output": "x", "caller": {}},
            "input[0].caller",
        ),
    ]:
        with pytest.raises(InvalidRequest) as raised:
            chat_of({"model": "m", "input": [item]})
        assert raised.value.param == param
    assert chat_of({"model": "m", "input": [{**call, "namespace": None}]})["messages"][0][
        "tool_calls"
    ]


def test_responses_answer_statuses() -> None:
    call = responses.translate_request({"model": "m", "input": "x"}, [])
    document = {
        "model": "up",
        "choices": [{"message": {"content": "cut"}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                  "prompt_tokens_details": {"cached_tokens": 1}},
    }  # fmt: skip
    answer = from_chat_completion(document, call, "resp_1", 7)
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}
    assert answer["usage"]["input_tokens_details"] == {"cached_tokens": 1}
    assert answer["model"] == "up" and answer["created_at"] == 7


def test_messages_turns_become_chat() -> None:
    call = messages.translate_request(
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            "messages": [
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                ]},
                {"role": "user", "content": [
                    {"type": "text", "text": "And?", "cache_control": {"type": "ephemeral"}},
                    {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
                     "content": [{"type": "text", "text": "boom"}]},
                ]},
            ],
            "tool_choice": {"type": "tool", "name": "f"},
        }
    )  # fmt: skip
    assert call.chat["messages"] == [
        {"role": "system", "content": "A\n\nB"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"},
        {"role": "user", "content": "And?"},
    ]
    assert call.chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def test_messages_block_hints_accepted_and_other_keys_refused() -> None:
    text = {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}, "citations": []}
    base = {"model": "m", "max_tokens": 5}
    chat = messages.translate_request({**base, "messages": [{"role": "user", "content": [text]}]})
    assert chat.chat["messages"] == [{"role": "user", "content": "Hi"}]
    use = {"type": "tool_use", "id": "t", "name": "f", "input": {}, "caller": None}
    for turn, param in [
        (
            {"role": "assistant", "content": [{**use, "caller": {"type": "direct"}}]},
            "messages[0].content[0].caller",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "toolset_name": "x"}],
            },
            "messages[0].content[0].toolset_name",
        ),
        (
            {"role": "user", "content": [{"type": "image", "source": {}, "transformations": [{}]}]},
            "messages[0].content[0].transformations",
        ),
        ({"role": "user", "content": "Hi", "name": "bob"}, "messages[0].name"),
    ]:
        with pytest.raises(InvalidRequest) as raised:
            messages.translate_request({**base, "messages": [turn]})
        assert raised.value.param == param
    assert messages.translate_request(
        {**base, "messages": [{"role": "assistant", "content": [use]}]}
    )


def test_messages_answer() -> None:
    document = {
        "model": "up",
        "choices": [
            {
                "message": {
                    "content": "Sure.",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": '{"x":2}'}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4,
                  "prompt_tokens_details": {"cached_tokens": 6}},
    }  # fmt: skip
    answer = messages.from_chat_completion(document)
    assert answer["content"] == [
        {"type": "text", "text": "Sure."},
        {"type": "tool_use", "id": "c", "name": "f", "input": {"x": 2}},
    ]
    assert answer["stop_reason"] == "tool_use"
    assert answer["usage"] == {
        "input_tokens": 4,
        "output_tokens": 4,
        "cache_read_input_tokens": 6,
    }


def _sse(*documents: Any) -> list[bytes]:
    return [
        b"data: " + (d if isinstance(d, bytes) else orjson.dumps(d)) + b"\n\n" for d in documents
    ]


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"model": "up", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def _relay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _events(raw: list[bytes]) -> list[dict[str, Any]]:
    body = b"".join(raw)
    return [orjson.loads(block.split(b"\ndata: ", 1)[1]) for block in body.split(b"\n\n") if block]


async def _collect(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


def test_reader_splits_multiline_data_and_errors() -> None:
    reader = ChatStreamReader()
    found = reader.feed(b'data: {"choices":[{"index":0,"delta":\ndata: {"content":"a"}}]}\n\n')
    assert found == [Text("a")]
    found = reader.feed(b'data: {"error": {"message": "m"}}\n\ndata: [DONE]\n\n')
    assert isinstance(found[0], Failed)
    found = reader.feed(b'data: {"choices":[],"usage":{"prompt_tokens":1}}\n\n')
    assert found == [Usage({"prompt_tokens": 1}, "")]
    assert reader.feed(
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    ) == [Finish("stop")]


def test_responses_stream_text_after_a_tool_call_is_a_new_item() -> None:
    call = responses.translate_request({"model": "m", "input": "x", "stream": True}, [])
    opening = {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}
    chunks = _sse(
        _chunk({"tool_calls": [opening]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
        _chunk({"content": "after"}),
        _chunk({}, "length"),
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}},
        b"[DONE]",
    )  # fmt: skip
    stream = ResponsesStream(call, "resp_1", 1, "m")
    events = _events(asyncio.run(_collect(stream.events(_relay(chunks)))))
    added = [e["item"]["type"] for e in events if e["type"] == "response.output_item.added"]
    assert added == ["function_call", "message"]
    last = events[-1]
    assert last["type"] == "response.incomplete"
    assert [item["type"] for item in last["response"]["output"]] == ["function_call", "message"]
    assert last["response"]["output"][0]["arguments"] == "{}"
    assert last["response"]["usage"]["output_tokens"] == 3
    assert stream.result == last["response"]


def test_messages_stream_in_band_error() -> None:
    chunks = _sse(
        _chunk({"content": "a"}), {"error": {"message": "gone", "code": "upstream_timeout"}}
    )
    events = _events(asyncio.run(_collect(MessagesStream("msg_1", "m").events(_relay(chunks)))))
    assert [e["type"] for e in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "error",
    ]
    assert events[-1]["error"] == {"type": "timeout_error", "message": "gone"}


def test_messages_stream_cut_short() -> None:
    events = _events(asyncio.run(_collect(MessagesStream("m1", "m").events(_relay([])))))
    assert events[-1]["type"] == "error"
