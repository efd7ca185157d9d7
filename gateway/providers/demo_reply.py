"""What the demo upstream answers a chat request, as a model would: a tool call, JSON, or text.

- ``tools`` (unless ``tool_choice`` is ``"none"``): a call of the named tool, else of the tool
  the last user message names, else of the first tool, with arguments made from the tool's
  JSON Schema (``demo_schema``). With ``tool_choice`` ``"auto"`` (the default) and a tool result
  as the last message, a text answer quoting that result instead, so agent loops end.
- ``response_format`` ``json_schema``: an instance of its schema. ``json_object``: an instance
  of the last JSON Schema written in the messages (LangChain's and pydantic's format
  instructions hold one), else an object with the keys the prompt names in quotes ("with keys
  'answer' and 'justification'"), else ``{"answer": ...}``.
- Otherwise the demo's fixed sentence echoing the prompt.

A reply is a sequence of pieces, each one completion token: what a stream sends one by one.
Like a model's, it stops at ``max_tokens`` (``max_completion_tokens``) with ``finish_reason``
``"length"``, JSON and tool arguments too: the gateway reserves no more than that.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.providers.demo_schema import example_instance

DEMO_NOTE = "(demo upstream: simulated answer, no model was called)"
_PIECE_CHARS = 4  # a JSON piece is about one token's worth of text
_SCANNED_CHARS = 65536  # of each message, when looking for a JSON Schema in the prompt
_SCAN_ATTEMPTS = 64
# "... with keys 'answer' and 'justification'": the quoted names up to the paragraph's end.
_NAMED_KEYS = re.compile(r"\b(?:keys?|fields?|propert(?:y|ies)|attributes?)\b([^\n]{0,400})", re.I)
_QUOTED_NAME = re.compile(r"[`'\"]([A-Za-z_][A-Za-z0-9_\-]{0,40})[`'\"]")


class DemoRequestError(Exception):
    """A request a real upstream would refuse with 400 (``param`` names the field)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ChatReply:
    pieces: tuple[str, ...]  # the content's fragments, or the tool call's arguments' fragments
    tool_call: ToolCall | None = None
    cut: bool = False  # stopped at max_tokens

    @property
    def text(self) -> str:
        """The content, or the tool call's arguments."""
        return "".join(self.pieces)

    @property
    def finish_reason(self) -> str:
        return "length" if self.cut else "tool_calls" if self.tool_call is not None else "stop"


def chat_reply(payload: Mapping[str, Any]) -> ChatReply:
    messages = payload.get("messages")
    messages = [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    tool = _tool_to_call(payload, messages)
    if tool is not None:
        name = str(tool.get("name", ""))
        arguments = _json_text(example_instance(_parameters(tool)))
        digest = hashlib.sha256(f"{len(messages)}:{name}:{arguments}".encode()).hexdigest()
        return _limited(_pieces(arguments), payload, ToolCall(f"call_demo_{digest[:16]}", name))
    words = _text_words(messages)
    response_format = payload.get("response_format")
    response_format = response_format if isinstance(response_format, dict) else {}
    kind = response_format.get("type")
    if kind == "json_schema":
        value = _schema_instance(response_format, words)
    elif kind == "json_object":
        value = _json_object(messages, words)
    else:
        return _limited(tuple(w if i == 0 else " " + w for i, w in enumerate(words)), payload)
    return _limited(_pieces(_json_text(value)), payload)


def answer_words(prompt: str, payload: Mapping[str, Any]) -> list[str]:
    """A fixed sentence naming the demo, echoing the prompt's start; cut at ``max_tokens``."""
    words = _sentence(prompt)
    limit = _max_tokens(payload)
    return words[:limit] if limit is not None else words


def _sentence(prompt: str) -> list[str]:
    echo = " ".join(prompt.split()[:12])
    return f"Hello from the gateway's demo upstream. You said: {echo!r}. {DEMO_NOTE}".split()


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return _content_text(message.get("content", ""))
    return ""


def _tool_to_call(
    payload: Mapping[str, Any], messages: list[dict[str, Any]]
) -> Mapping[str, Any] | None:
    tools = payload.get("tools")
    functions: list[dict[str, Any]] = [
        t["function"]
        for t in (tools if isinstance(tools, list) else [])
        if isinstance(t, dict) and isinstance(t.get("function"), dict)
    ]
    choice = payload.get("tool_choice", "auto")
    if not functions or choice == "none":
        return None
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        wanted = choice["function"].get("name")
        for function in functions:
            if function.get("name") == wanted:
                return function
        raise DemoRequestError(
            f"tool_choice names the function {wanted!r}, which is not among the tools.",
            "tool_choice",
        )
    if choice != "required" and messages and messages[-1].get("role") == "tool":
        return None  # "auto" after a tool result: the model answers with what it got
    prompt = last_user_text(messages).lower()
    named = (f for f in functions if str(f.get("name", "")).lower() in prompt)
    return next(named, functions[0])


def _parameters(function: Mapping[str, Any]) -> Any:
    parameters = function.get("parameters")
    return parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}


def _text_words(messages: list[dict[str, Any]]) -> list[str]:
    last = messages[-1] if messages else {}
    if last.get("role") != "tool":
        return _sentence(last_user_text(messages))
    result = " ".join(_content_text(last.get("content", "")).split()[:40])
    tool = _called_tool_name(messages, last.get("tool_call_id"))
    return f"The {tool} tool returned: {result} {DEMO_NOTE}".split()


def _called_tool_name(messages: list[dict[str, Any]], call_id: Any) -> str:
    for message in reversed(messages):
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict) and call.get("id") == call_id:
                function = call.get("function")
                if isinstance(function, dict) and function.get("name"):
                    return str(function["name"])
    return "requested"


def _schema_instance(response_format: Mapping[str, Any], words: list[str]) -> Any:
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return example_instance(schema) if isinstance(schema, dict) else {"answer": " ".join(words)}


def _json_object(messages: list[dict[str, Any]], words: list[str]) -> Any:
    schema = _schema_in_prompt(messages)
    if schema is not None:
        return example_instance(schema)
    for message in reversed(messages):
        if message.get("role") in ("user", "system", "developer"):
            request = _NAMED_KEYS.search(_content_text(message.get("content", "")))
            keys = _QUOTED_NAME.findall(request.group(1))[:20] if request else []
            if keys:
                return {key: f"demo {key.replace('_', ' ')}" for key in keys}
    return {"answer": " ".join(words)}


def _schema_in_prompt(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The last JSON object in the messages that looks like a JSON Schema of an object."""
    decoder = json.JSONDecoder()
    for message in reversed(messages):
        text = _content_text(message.get("content", ""))[-_SCANNED_CHARS:]
        found, start, attempts = None, text.find("{"), 0
        while start >= 0 and attempts < _SCAN_ATTEMPTS:
            attempts += 1
            try:
                value, end = decoder.raw_decode(text, start)
            except ValueError:
                start = text.find("{", start + 1)
                continue
            if isinstance(value, dict) and isinstance(value.get("properties"), dict):
                found = value
            start = text.find("{", end)
        if found is not None:
            return found
    return None


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content) if content is not None else ""


def _max_tokens(payload: Mapping[str, Any]) -> int | None:
    limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
    return limit if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 else None


def _limited(
    pieces: tuple[str, ...], payload: Mapping[str, Any], tool_call: ToolCall | None = None
) -> ChatReply:
    limit = _max_tokens(payload)
    if limit is None or len(pieces) <= limit:
        return ChatReply(pieces, tool_call)
    return ChatReply(pieces[:limit], tool_call, cut=True)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pieces(text: str) -> tuple[str, ...]:
    return tuple(text[i : i + _PIECE_CHARS] for i in range(0, len(text), _PIECE_CHARS))
