"""Anthropic's Messages API behind the OpenAI chat shape: the request, the answer and errors."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
import orjson

from gateway.config.model import Model
from gateway.errors import UpstreamError
from gateway.providers.openai import redact, upstream_url
from gateway.secret import Secret

API_VERSION = b"2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI's callers may omit it
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic error type → (OpenAI status, OpenAI type, code)
ERROR_TYPES: dict[str, tuple[int, str, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None),
    "authentication_error": (401, "authentication_error", "invalid_api_key"),
    "permission_error": (403, "permission_error", None),
    "not_found_error": (404, "invalid_request_error", "model_not_found"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "rate_limit_error": (429, "rate_limit_error", "rate_limit_exceeded"),
    "api_error": (500, "api_error", None),
    "timeout_error": (504, "api_error", "timeout"),
    "overloaded_error": (503, "api_error", "overloaded"),  # Anthropic's 529: retryable
}
PASSED_SAMPLING = ("temperature", "top_p", "top_k")


def build_request(
    model: Model, body: dict[str, Any], *, api_key: Secret | None, request_id: str
) -> httpx.Request:
    """POST ``{base_url}/messages`` with the chat body translated."""
    payload = orjson.dumps(messages_body(body, model.upstream_model))
    return post_messages(model, payload, api_key=api_key, request_id=request_id)


def post_messages(
    model: Model, payload: bytes, *, api_key: Secret | None, request_id: str
) -> httpx.Request:
    """POST ``{base_url}/messages`` with a Messages API body as it is."""
    upstream = model.upstream
    url = upstream_url(upstream.base_url, "/messages")
    headers = [
        (b"host", url.netloc),
        (b"accept-encoding", b"identity"),
        (b"x-request-id", request_id.encode()),
        (b"anthropic-version", API_VERSION),
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(payload)),
    ]
    if api_key is not None:
        headers.append((b"x-api-key", api_key.reveal().encode()))
    timeouts = {
        "connect": upstream.connect_timeout_s,
        "read": upstream.idle_timeout_s,
        "write": upstream.idle_timeout_s,
        "pool": upstream.connect_timeout_s,
    }
    return httpx.Request(
        "POST",
        url,
        headers=headers,
        stream=httpx.ByteStream(payload),
        extensions={"timeout": timeouts},
    )


# -- request -----------------------------------------------------------------------------------


def messages_body(body: dict[str, Any], upstream_model: str) -> dict[str, Any]:
    """An OpenAI chat completions body as a Messages API body. What it does with each field
    is ``protocols/fields.py``'s ``CHAT_ANTHROPIC``; the pipeline refuses (or drops and
    names) a field this leaves out before the body gets here (``proxy/chat_fields.py``)."""
    system, messages = _messages(body.get("messages") or [])
    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": body.get("max_tokens")
        or body.get("max_completion_tokens")
        or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = system
    for key in PASSED_SAMPLING:
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("stream") is True:
        out["stream"] = True
    if tools := body.get("tools"):
        out["tools"] = [_tool(tool) for tool in tools if isinstance(tool, dict)]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None:
        out["tool_choice"] = choice
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    if (schema := json_schema(body.get("response_format"))) is not None:
        out["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return out


def json_schema(response_format: Any) -> dict[str, Any] | None:
    """The schema of a ``json_schema`` response format (Anthropic's structured outputs);
    ``json_object`` has no counterpart (refused before it gets here)."""
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    spec = response_format.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def _messages(messages: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, alternating user/assistant messages); consecutive same-role turns and
    tool results are merged, as the Messages API requires."""
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(_blocks(message.get("content")))
            continue
        if role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif role == "assistant":
            blocks = _blocks(message.get("content")) + _tool_uses(message.get("tool_calls"))
        else:
            role, blocks = "user", _blocks(message.get("content"))
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind in ("image_url", "input_image"):
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if isinstance(url, str):
                blocks.append({"type": "image", "source": _image_source(url)})
    return blocks


def _image_source(url: str) -> dict[str, str]:
    """``data:image/png;base64,…`` inline, anything else by URL."""
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return {"type": "base64", "media_type": head[5:] or "image/png", "data": data}
    return {"type": "url", "url": url}


def _tool_uses(calls: Any) -> list[dict[str, Any]]:
    blocks = []
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": arguments if isinstance(arguments, dict) else {},
            }
        )
    return blocks


def _tool_result(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    if isinstance(content, list):
        content = [block for block in _blocks(content) if block["type"] == "text"]
    return {
        "type": "tool_result",
        "tool_use_id": message.get("tool_call_id"),
        "content": content if content is not None else "",
    }


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    nested = tool.get("function")
    function: dict[str, Any] = nested if isinstance(nested, dict) else tool
    out = {
        "name": function.get("name"),
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    if function.get("strict") is True:  # Anthropic's strict tool use: inputs follow the schema
        out["strict"] = True
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    if choice == "none":
        return {"type": "none"}
    out: dict[str, Any] | None = None
    if choice == "auto":
        out = {"type": "auto"}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        out = {"type": "tool", "name": choice["function"].get("name")}
    if parallel is False:
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


# -- answer ------------------------------------------------------------------------------------


def chat_completion(answer: bytes, model_name: str) -> bytes:
    """A Messages API answer as a ``chat.completion`` (unchanged when it is not one)."""
    try:
        message = orjson.loads(answer)
    except orjson.JSONDecodeError:
        return answer
    if not isinstance(message, dict) or message.get("type") != "message":
        return answer
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in message.get("content") or ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            text.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            calls.append(tool_call(block, len(calls), with_index=False))
    reply: dict[str, Any] = {"role": "assistant", "content": "".join(text) if text else None}
    if calls:
        reply["tool_calls"] = calls
    document = {
        "id": str(message.get("id", "")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": FINISH_REASONS.get(str(message.get("stop_reason")), "stop"),
            }
        ],
        "usage": openai_usage(message.get("usage")),
    }
    return orjson.dumps(document)


def tool_call(block: dict[str, Any], index: int, *, with_index: bool) -> dict[str, Any]:
    arguments = block.get("input")
    call: dict[str, Any] = {
        "id": block.get("id"),
        "type": "function",
        "function": {
            "name": block.get("name"),
            "arguments": orjson.dumps(arguments).decode() if arguments else "",
        },
    }
    if with_index:
        call["index"] = index
    elif not call["function"]["arguments"]:
        call["function"]["arguments"] = "{}"
    return call


def openai_usage(usage: Any) -> dict[str, Any]:
    """Anthropic's usage in OpenAI's terms: cache writes and reads count as prompt tokens
    (they are billed as input), the reads also as ``cached_tokens``; the raw fields stay."""
    usage = usage if isinstance(usage, dict) else {}
    fresh = non_negative_int(usage.get("input_tokens"))
    written = non_negative_int(usage.get("cache_creation_input_tokens"))
    read = non_negative_int(usage.get("cache_read_input_tokens"))
    output = non_negative_int(usage.get("output_tokens"))
    prompt = fresh + written + read
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": read},
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def non_negative_int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# -- errors ------------------------------------------------------------------------------------


def upstream_error(
    status: int, body: bytes, secrets: Iterable[Secret | None] = ()
) -> UpstreamError:
    """``{"type": "error", "error": {"type", "message"}}`` as an OpenAI-shaped error, its
    status mapped by type (``overloaded_error``'s 529 becomes a retryable 503)."""
    try:
        document = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        document = None
    error = document.get("error") if isinstance(document, dict) else None
    kind = str(error.get("type")) if isinstance(error, dict) else ""
    message = error.get("message") if isinstance(error, dict) else None
    mapped_status, type_, code = ERROR_TYPES.get(kind, (status, "", None))
    if kind not in ERROR_TYPES:
        mapped_status = 503 if status == 529 else status
        type_ = "api_error" if status >= 500 else "invalid_request_error"
    text = redact(str(message or f"Upstream answered HTTP {status}"), secrets)
    return UpstreamError(text, status=mapped_status, type=type_, code=code or kind or None)
