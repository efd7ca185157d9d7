"""A Responses API request (``POST /v1/responses``) as a chat completions body.

Input items become chat messages: ``message`` items with text and image parts,
``function_call`` items the assistant's ``tool_calls``, ``function_call_output`` items tool
messages. Every field is carried, translated or refused as ``fields.RESPONSES`` says.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import InvalidRequest
from gateway.protocols.fields import RESPONSES, check_fields, check_keys, refused

API = "Responses API"
MAX_INT32 = 2**31 - 1
CARRIED = (
    "temperature",
    "top_p",
    "parallel_tool_calls",
    "metadata",
    "user",
    "safety_identifier",
    "prompt_cache_key",
    "service_tier",
)
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass
class ResponsesCall:
    """One translated request: the chat body and what the answer and the store need."""

    chat: dict[str, Any]
    input_items: list[dict[str, Any]]  # this request's input, as items with ids
    history: list[dict[str, Any]]  # the stored conversation before it (previous_response_id)
    echo: dict[str, Any] = field(default_factory=dict)  # request fields the Response repeats
    store: bool = True
    stream: bool = False


def previous_id(body: Mapping[str, Any]) -> str | None:
    value = body.get("previous_response_id")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(
            "'previous_response_id' must be a string.", param="previous_response_id"
        )
    return value


def check_request(body: Mapping[str, Any]) -> None:
    check_fields(body, RESPONSES, API)


def translate_request(body: Mapping[str, Any], history: list[dict[str, Any]]) -> ResponsesCall:
    """``body`` already passed ``check_request``; ``history``: the stored items it continues."""
    items = input_items(body.get("input"))
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string.", param="instructions")
        messages.append({"role": "system", "content": instructions})
    messages += items_to_messages(history, "previous_response_id")
    messages += items_to_messages(items, "input")
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for name in CARRIED:
        if body.get(name) is not None:
            chat[name] = body[name]
    if (reasoning := body.get("reasoning")) is not None:
        chat.update(reasoning_fields(reasoning))
    if (tools := body.get("tools")) is not None:
        chat["tools"] = chat_tools(tools)
    if (choice := body.get("tool_choice")) is not None:
        chat["tool_choice"] = chat_tool_choice(choice)
    if (text := body.get("text")) is not None and (form := response_format(text)) is not None:
        chat["response_format"] = form
    if (limit := body.get("max_output_tokens")) is not None:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_INT32:
            raise InvalidRequest(
                f"'max_output_tokens' must be an integer from 1 to {MAX_INT32}.",
                param="max_output_tokens",
            )
        chat["max_tokens"] = limit
    stream = _flag(body, "stream", False)
    if stream:
        _stream_options(body.get("stream_options"))
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    elif body.get("stream_options") is not None:
        raise InvalidRequest("'stream_options' needs 'stream': true.", param="stream_options")
    return ResponsesCall(
        chat, items, history, _echo(body), store=_flag(body, "store", True), stream=stream
    )


def _flag(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be a boolean.", param=name)
    return value


def _stream_options(options: Any) -> None:
    if options is None:
        return
    if not isinstance(options, dict):
        raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
    for key, value in options.items():
        if key != "include_obfuscation":
            raise InvalidRequest(f"Unknown parameter: 'stream_options.{key}'.", param=key)
        if value:
            raise refused("stream_options.include_obfuscation", "no obfuscation is added")


def _echo(body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "user": body.get("user"),
        "background": False,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "service_tier": body.get("service_tier"),
        "store": _flag(body, "store", True),
    }


def reasoning_fields(reasoning: Any) -> dict[str, Any]:
    """``reasoning`` in chat terms: ``effort`` → ``reasoning_effort`` (the bridge then checks
    that the chain's models take it); a summary has no chat counterpart and is refused."""
    if not isinstance(reasoning, dict):
        raise InvalidRequest("'reasoning' must be an object.", param="reasoning")
    for key, value in reasoning.items():
        if key not in ("effort", "summary", "generate_summary"):
            raise InvalidRequest(f"Unknown parameter: 'reasoning.{key}'.", param=f"reasoning.{key}")
        if key != "effort" and value is not None:
            raise refused(f"reasoning.{key}", "chat completions return no reasoning summary")
    effort = reasoning.get("effort")
    if effort is None:
        return {}
    if effort not in REASONING_EFFORTS:
        raise InvalidRequest(
            f"'reasoning.effort' must be one of {', '.join(REASONING_EFFORTS)}.",
            param="reasoning.effort",
        )
    return {"reasoning_effort": effort}


# -- input items -------------------------------------------------------------------------------


def input_items(value: Any) -> list[dict[str, Any]]:
    """The input as a list of items, each with an id (a string is one user message)."""
    if isinstance(value, str):
        value = [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            "'input' must be a string or a non-empty list of items.", param="input"
        )
    items = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"'input[{index}]' must be an object.", param=f"input[{index}]")
        kind = item.get("type") or ("message" if "role" in item else None)
        prefix = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}
        item = {**item, "type": kind}
        if kind in prefix and not item.get("id"):
            item["id"] = new_id(prefix[kind])
        items.append(item)
    return items


# what an item or part may carry besides its content, with no effect on the answer: ids and
# statuses of earlier output, an assistant message's phase, prompt-cache breakpoints, and the
# annotations and log probabilities an answer's text came with
ITEM_HINTS = ("id", "status", "phase")
PART_HINTS = ("prompt_cache_breakpoint", "annotations", "logprobs")


def items_to_messages(items: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        kind = item.get("type")
        if kind == "message":
            check_keys(item, at, ("type", "role", "content"), ITEM_HINTS)
            messages.append(_message(item, at))
        elif kind == "function_call":
            check_keys(item, at, ("type", "call_id", "name", "arguments"), ITEM_HINTS)
            call = {
                "id": _string(item, "call_id", at),
                "type": "function",
                "function": {
                    "name": _string(item, "name", at),
                    "arguments": _string(item, "arguments", at),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            check_keys(item, at, ("type", "call_id", "output"), (*ITEM_HINTS, "name"))
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": _string(item, "call_id", at),
                    "content": _tool_output(item.get("output"), f"{at}.output"),
                }
            )
        else:
            raise refused(f"{at}.type", f"input items of type {kind!r} are not bridged")
    return messages


def _string(item: Mapping[str, Any], name: str, at: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{at}.{name}' must be a string.", param=f"{at}.{name}")
    return value


def _message(item: Mapping[str, Any], at: str) -> dict[str, Any]:
    role = ROLES.get(str(item.get("role")))
    if role is None:
        raise InvalidRequest(
            f"'{at}.role' must be user, system, developer or assistant.", param=f"{at}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(f"'{at}.content' must be a string or a list.", param=f"{at}.content")
    parts = [_part(part, f"{at}.content[{i}]", role) for i, part in enumerate(content)]
    if role != "user" or (len(parts) == 1 and parts[0]["type"] == "text"):
        return {"role": role, "content": "".join(part["text"] for part in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, at: str, role: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest(f"'{at}' must be an object.", param=at)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        check_keys(part, at, ("type", "text"), PART_HINTS)
        return {"type": "text", "text": _string(part, "text", at)}
    if kind == "refusal":
        check_keys(part, at, ("type", "refusal"), PART_HINTS)
        return {"type": "text", "text": _string(part, "refusal", at)}
    if kind == "input_image" and role == "user":
        check_keys(part, at, ("type", "image_url", "detail", "file_id"), PART_HINTS)
        if part.get("file_id") is not None:
            raise refused(f"{at}.file_id", "files are not served; send image_url")
        image: dict[str, Any] = {"url": _string(part, "image_url", at)}
        if part.get("detail") is not None:
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise refused(f"{at}.type", f"content parts of type {kind!r} are not bridged here")


def _tool_output(output: Any, at: str) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        texts = []
        for index, part in enumerate(output):
            if not isinstance(part, dict) or part.get("type") != "input_text":
                raise refused(
                    f"{at}[{index}]", "only input_text parts are bridged in a tool output"
                )
            texts.append(_string(part, "text", f"{at}[{index}]"))
        return "".join(texts)
    raise InvalidRequest(f"'{at}' must be a string or a list of parts.", param=at)


# -- tools and formats -------------------------------------------------------------------------


FUNCTION_TOOL = ("type", "name", "description", "parameters", "strict")


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        at = f"tools[{index}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function" or not isinstance(tool, dict):
            raise refused(f"{at}.type", f"built-in tool {kind!r} is not served; function tools are")
        check_keys(tool, at, FUNCTION_TOOL)
        function: dict[str, Any] = {"name": _string(tool, "name", at)}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": _string(choice, "name", "tool_choice")}}
    kind = choice.get("type") if isinstance(choice, dict) else choice
    raise refused("tool_choice", f"tool_choice {kind!r} is not bridged")


def response_format(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    for key, value in text.items():
        if key == "verbosity" and value is not None:
            raise refused("text.verbosity", "not bridged to chat completions")
        if key not in ("format", "verbosity"):
            raise InvalidRequest(f"Unknown parameter: 'text.{key}'.", param=f"text.{key}")
    form = text.get("format")
    kind = form.get("type") if isinstance(form, dict) else None
    if form is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(form, dict):
        schema: dict[str, Any] = {"name": _string(form, "name", "text.format")}
        for key in ("schema", "strict", "description"):
            if form.get(key) is not None:
                schema[key] = form[key]
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(
        "'text.format.type' must be text, json_object or json_schema.", param="text.format.type"
    )
