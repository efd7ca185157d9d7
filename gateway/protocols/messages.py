"""The Anthropic Messages API (``POST /v1/messages``) over chat completions, both ways.

The request becomes a chat completions body; the chat answer and errors come back in the
Messages API's shapes."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.errors import InvalidRequest
from gateway.protocols.fields import MESSAGES, check_fields, check_keys, refused

API = "Messages API"
MAX_INT32 = 2**31 - 1
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# HTTP status → Anthropic error type
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}


@dataclass(frozen=True)
class MessagesCall:
    chat: dict[str, Any]
    stream: bool


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def translate_request(body: Mapping[str, Any]) -> MessagesCall:
    check_fields(body, MESSAGES, API)
    limit = body.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_INT32:
        raise InvalidRequest(
            f"'max_tokens' is required: an integer from 1 to {MAX_INT32}.", param="max_tokens"
        )
    chat: dict[str, Any] = {"model": body.get("model"), "max_tokens": limit}
    messages = []
    if (system := body.get("system")) is not None:
        messages.append({"role": "system", "content": _system(system)})
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise InvalidRequest("'messages' must be a non-empty list.", param="messages")
    for index, turn in enumerate(turns):
        messages += _turn(turn, f"messages[{index}]")
    chat["messages"] = messages
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            chat[name] = body[name]
    if (stop := body.get("stop_sequences")) is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest(
                "'stop_sequences' must be a list of strings.", param="stop_sequences"
            )
        chat["stop"] = stop
    if (tools := body.get("tools")) is not None:
        chat["tools"] = _tools(tools)
    if (choice := body.get("tool_choice")) is not None:
        chat.update(_tool_choice(choice))
    if (metadata := body.get("metadata")) is not None:
        chat.update(_metadata(metadata))
    if not isinstance(body.get("cache_control"), dict | None):
        raise InvalidRequest("'cache_control' must be an object.", param="cache_control")
    if (output := body.get("output_config")) is not None:
        chat.update(_output_config(output))
    stream = body.get("stream") is True
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return MessagesCall(chat, stream)


def _system(system: Any) -> str:
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        texts = []
        for index, block in enumerate(system):
            if not isinstance(block, dict) or block.get("type") != "text":
                raise refused(f"system[{index}].type", "system blocks must be text")
            texts.append(_string(block, "text", f"system[{index}]"))
        return "\n\n".join(texts)
    raise InvalidRequest("'system' must be a string or a list of text blocks.", param="system")


def _string(block: Mapping[str, Any], name: str, at: str) -> str:
    value = block.get(name)
    if not isinstance(value, str):
        raise InvalidRequest(f"'{at}.{name}' must be a string.", param=f"{at}.{name}")
    return value


# a block's prompt-caching hint: no effect on the answer (a text block's citations neither)
BLOCK_HINTS = ("cache_control",)


def _turn(turn: Any, at: str) -> list[dict[str, Any]]:
    """One Messages turn as chat messages: a user turn's tool results become tool messages
    (before its other content); an assistant turn's tool uses become its tool calls."""
    role = turn.get("role") if isinstance(turn, dict) else None
    if role not in ("user", "assistant") or not isinstance(turn, dict):
        raise InvalidRequest(f"'{at}.role' must be user or assistant.", param=f"{at}.role")
    check_keys(turn, at, ("role", "content"))
    content = turn.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{at}.content' must be a string or a list.", param=f"{at}.content")
    parts: list[dict[str, Any]] = []
    tool_messages: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(content):
        where = f"{at}.content[{index}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(block, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        if kind == "text":
            check_keys(block, where, ("type", "text"), (*BLOCK_HINTS, "citations"))
            parts.append({"type": "text", "text": _string(block, "text", where)})
        elif kind == "image" and role == "user":
            check_keys(block, where, ("type", "source"), BLOCK_HINTS)
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block, where)}})
        elif kind == "tool_result" and role == "user":
            check_keys(block, where, ("type", "tool_use_id", "content", "is_error"), BLOCK_HINTS)
            tool_messages.append(_tool_result(block, where))
        elif kind == "tool_use" and role == "assistant":
            check_keys(block, where, ("type", "id", "name", "input"), BLOCK_HINTS)
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": _string(block, "id", where),
                    "type": "function",
                    "function": {"name": _string(block, "name", where), "arguments": arguments},
                }
            )
        else:
            raise refused(f"{where}.type", f"{kind!r} blocks in a {role} turn are not bridged")
    out = list(tool_messages)
    if role == "assistant":
        text = "".join(part["text"] for part in parts)
        if text or calls:
            message: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
    elif parts:
        single = len(parts) == 1 and parts[0]["type"] == "text"
        out.append({"role": "user", "content": parts[0]["text"] if single else parts})
    return out


def _image_url(block: Mapping[str, Any], at: str) -> str:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media = _string(source, "media_type", f"{at}.source")
        return f"data:{media};base64,{_string(source, 'data', f'{at}.source')}"
    if kind == "url" and isinstance(source, dict):
        return _string(source, "url", f"{at}.source")
    raise refused(f"{at}.source.type", "images are bridged from base64 or url sources")


def _tool_result(block: Mapping[str, Any], at: str) -> dict[str, Any]:
    content = block.get("content")
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise refused(f"{at}.content[{index}].type", "tool results are bridged as text")
            texts.append(_string(part, "text", f"{at}.content[{index}]"))
        content = "".join(texts)
    elif content is None:
        content = ""
    elif not isinstance(content, str):
        raise InvalidRequest(f"'{at}.content' must be a string or a list.", param=f"{at}.content")
    if block.get("is_error") is True:
        content = f"Error: {content}"
    return {"role": "tool", "tool_call_id": _string(block, "tool_use_id", at), "content": content}


CUSTOM_TOOL = ("type", "name", "description", "input_schema", "strict")
# no effect on the answer: prompt caching, and how Anthropic would stream the arguments
TOOL_HINTS = ("cache_control", "eager_input_streaming")


def _tools(tools: Any) -> list[dict[str, Any]]:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list.", param="tools")
    out = []
    for index, tool in enumerate(tools):
        at = f"tools[{index}]"
        if not isinstance(tool, dict):
            raise InvalidRequest(f"'{at}' must be an object.", param=at)
        if tool.get("type") not in (None, "custom"):
            raise refused(f"{at}.type", f"server tool {tool.get('type')!r} is not served")
        check_keys(tool, at, CUSTOM_TOOL, TOOL_HINTS)
        function: dict[str, Any] = {"name": _string(tool, "name", at)}
        if tool.get("description") is not None:
            function["description"] = tool["description"]
        function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
        if tool.get("strict") is not None:
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or kind not in ("auto", "any", "tool", "none"):
        raise InvalidRequest(
            "'tool_choice.type' must be auto, any, tool or none.", param="tool_choice"
        )
    out: dict[str, Any] = {}
    if kind == "tool":
        name = _string(choice, "name", "tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    for key in metadata:
        if key != "user_id":
            raise InvalidRequest(f"Unknown parameter: 'metadata.{key}'.", param=f"metadata.{key}")
    user = metadata.get("user_id")
    if user is None:
        return {}
    if not isinstance(user, str):
        raise InvalidRequest("'metadata.user_id' must be a string.", param="metadata.user_id")
    return {"user": user}


def _output_config(output: Any) -> dict[str, Any]:
    """``format`` (a JSON schema) → ``response_format``; ``effort`` has no chat counterpart
    for every model, so it is refused by name."""
    if not isinstance(output, dict):
        raise InvalidRequest("'output_config' must be an object.", param="output_config")
    for key, value in output.items():
        if key == "effort" and value is not None:
            raise refused("output_config.effort", "not bridged to chat completions")
        if key not in ("format", "effort"):
            param = f"output_config.{key}"
            raise InvalidRequest(f"Unknown parameter: '{param}'.", param=param)
    form = output.get("format")
    if form is None:
        return {}
    if not isinstance(form, dict) or form.get("type") != "json_schema":
        param = "output_config.format.type"
        raise InvalidRequest(f"'{param}' must be json_schema.", param=param)
    schema = form.get("schema")
    if not isinstance(schema, dict):
        param = "output_config.format.schema"
        raise InvalidRequest(f"'{param}' must be an object.", param=param)
    # Anthropic's structured outputs always follow the schema: chat's strict mode
    spec = {"name": "output", "schema": schema, "strict": True}
    return {"response_format": {"type": "json_schema", "json_schema": spec}}


# -- answers -----------------------------------------------------------------------------------


def messages_usage(usage: Any) -> dict[str, int]:
    usage = usage if isinstance(usage, dict) else {}
    prompt = _count(usage.get("prompt_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = _count(details.get("cached_tokens")) if isinstance(details, dict) else 0
    return {
        "input_tokens": max(0, prompt - cached),
        "output_tokens": _count(usage.get("completion_tokens")),
        "cache_read_input_tokens": cached,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tool_input(arguments: str) -> Any:
    """A tool call's arguments as the tool_use block's ``input`` (an object)."""
    try:
        value = orjson.loads(arguments) if arguments else {}
    except orjson.JSONDecodeError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def from_chat_completion(document: dict[str, Any]) -> dict[str, Any]:
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    content: list[dict[str, Any]] = []
    for key in ("content", "refusal"):
        if isinstance(message.get(key), str) and message[key]:
            content.append({"type": "text", "text": message[key]})
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append(
                {
                    "type": "tool_use",
                    "id": str(call.get("id") or ""),
                    "name": str(function.get("name") or ""),
                    "input": tool_input(str(function.get("arguments") or "")),
                }
            )
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": str(document.get("model") or ""),
        "content": content,
        "stop_reason": STOP_REASONS.get(str(finish), "end_turn"),
        "stop_sequence": None,
        "usage": messages_usage(document.get("usage")),
    }


def error_body(status: int, error: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI-shaped error's ``error`` object in the Messages API's error shape."""
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    message = str(error.get("message") or "")
    return {"type": "error", "error": {"type": kind, "message": message}}
