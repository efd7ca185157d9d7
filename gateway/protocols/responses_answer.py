"""A chat completion answer as a Responses API ``response`` object."""

from __future__ import annotations

from typing import Any

from gateway.protocols.responses import ResponsesCall, new_id

# chat finish_reason → the Response's incomplete_details.reason (None: completed)
INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def message_item(text: str, *, refusal: bool = False, status: str = "completed") -> dict[str, Any]:
    part = (
        {"type": "refusal", "refusal": text}
        if refusal
        else {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    )
    return {
        "type": "message",
        "id": new_id("msg"),
        "status": status,
        "role": "assistant",
        "content": [part],
    }


def function_call_item(call_id: str, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": new_id("fc"),
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def output_items(message: dict[str, Any]) -> list[dict[str, Any]]:
    """A chat ``message`` as output items: its text, its refusal, then its tool calls."""
    items = []
    content = message.get("content")
    if isinstance(content, str) and content:
        items.append(message_item(content))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        items.append(message_item(refusal, refusal=True))
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            items.append(
                function_call_item(
                    str(call.get("id") or new_id("call")),
                    str(function.get("name") or ""),
                    str(function.get("arguments") or ""),
                    "completed",
                )
            )
    return items


def responses_usage(usage: Any) -> dict[str, Any] | None:
    """Chat usage in the Responses API's terms (None when the upstream reported none)."""
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = prompt_details.get("cached_tokens") if isinstance(prompt_details, dict) else 0
    reasoning = (
        completion_details.get("reasoning_tokens") if isinstance(completion_details, dict) else 0
    )
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": _count(cached)},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(reasoning)},
        "total_tokens": _count(usage.get("total_tokens")) or prompt + completion,
    }


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def response_object(
    call: ResponsesCall,
    response_id: str,
    created_at: int,
    *,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    reason = INCOMPLETE.get(finish_reason or "")
    if status == "completed" and reason is not None:
        status = "incomplete"
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "model": model,
        "output": output,
        "usage": usage,
        **call.echo,
    }


def from_chat_completion(
    document: dict[str, Any], call: ResponsesCall, response_id: str, created_at: int
) -> dict[str, Any]:
    choices = document.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return response_object(
        call,
        response_id,
        created_at,
        model=str(document.get("model") or call.chat.get("model") or ""),
        status="completed",
        output=output_items(message if isinstance(message, dict) else {}),
        usage=responses_usage(document.get("usage")),
        finish_reason=finish if isinstance(finish, str) else None,
    )
