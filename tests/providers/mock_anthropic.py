"""A local Anthropic Messages API (``POST /v1/messages``), written from its documented formats.

The model id picks the behaviour: ``*tools*`` answers with a ``tool_use`` block, ``*overloaded*``
answers 529 ``overloaded_error``, ``*ratelimited*`` 429 ``rate_limit_error``, ``*midstream*``
streams a little text then an ``error`` event, ``*cache*`` reports prompt-caching usage.
A request with ``output_config.format`` (structured outputs) is answered with JSON fitting its
schema.
Streams follow the documented event sequence, ``ping`` included.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.mock_upstream import schema_sample


def _usage(model: str) -> dict[str, int]:
    usage = {"input_tokens": 11, "output_tokens": 7}
    if "cache" in model:
        usage |= {"cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}
    return usage


def _content(model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    form = (body.get("output_config") or {}).get("format")
    if isinstance(form, dict) and form.get("type") == "json_schema":
        return [{"type": "text", "text": json.dumps(schema_sample(form.get("schema")))}]
    if "tools" in model:
        return [
            {"type": "text", "text": "Let me check."},
            {
                "type": "tool_use",
                "id": "toolu_01",
                "name": "get_weather",
                "input": {"city": "Paris", "unit": "c"},
            },
        ]
    return [{"type": "text", "text": "Hello from Claude"}]


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(model: str, body: dict[str, Any]) -> list[bytes]:
    usage = _usage(model)
    message = {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": model,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    events = [_event("message_start", {"type": "message_start", "message": message})]
    events.append(_event("ping", {"type": "ping"}))
    for index, block in enumerate(_content(model, body)):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            words = block["text"].split(" ")
            deltas = [
                {"type": "text_delta", "text": w if i == 0 else " " + w}
                for i, w in enumerate(words)
            ]
        else:
            start = {**block, "input": {}}
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[:9]},
                {"type": "input_json_delta", "partial_json": raw[9:]},
            ]
        events.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            events.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
            if "midstream" in model:
                error = {"type": "overloaded_error", "message": "Overloaded"}
                return [*events, _event("error", {"type": "error", "error": error})]
        events.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    reason = "tool_use" if "tools" in model else "end_turn"
    events.append(
        _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(_event("message_stop", {"type": "message_stop"}))
    return events


def _error(status: int, kind: str, message: str) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


class MockAnthropic:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if request.headers.get("anthropic-version") != "2023-06-01":
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        if not request.headers.get("x-api-key"):
            return _error(401, "authentication_error", "invalid x-api-key")
        model = body["model"]
        if "max_tokens" not in body:
            return _error(400, "invalid_request_error", "max_tokens: Field required")
        if "overloaded" in model:
            return _error(529, "overloaded_error", "Overloaded")
        if "ratelimited" in model:
            return _error(429, "rate_limit_error", "Number of request tokens has exceeded")
        if body.get("stream"):

            async def chunks() -> Any:
                for event in _stream(model, body):
                    yield event

            return StreamingResponse(chunks(), media_type="text/event-stream")
        reason = "tool_use" if "tools" in model else "end_turn"
        message = {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "content": _content(model, body),
            "model": model,
            "stop_reason": reason,
            "stop_sequence": None,
            "usage": _usage(model),
        }
        return JSONResponse(message)
