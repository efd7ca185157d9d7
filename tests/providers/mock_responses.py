"""A local OpenAI Responses API (``POST /v1/responses``), written from its documented formats.

The model id picks the behaviour: ``*fail*`` answers 503, ``*cut*`` streams a little text then
hangs up without ``response.completed``; any other answers "Native hello" with usage 13 in /
5 out (a stream: the documented event sequence, ``response.completed`` carrying the usage).
Every request body is recorded."""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

USAGE = {
    "input_tokens": 13,
    "input_tokens_details": {"cached_tokens": 0},
    "output_tokens": 5,
    "output_tokens_details": {"reasoning_tokens": 2},
    "total_tokens": 18,
}
TEXT = "Native hello"


def _response(model: str, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "resp_native_0001",
        "object": "response",
        "created_at": 1700000000,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": USAGE if status == "completed" else None,
    }


def _message(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "msg_native_01",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _event(data: dict[str, Any], sequence: int) -> bytes:
    data = {**data, "sequence_number": sequence}
    return f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(model: str) -> list[bytes]:
    item = {**_message(""), "status": "in_progress", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    kinds: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response(model, "in_progress", [])},
        {"type": "response.in_progress", "response": _response(model, "in_progress", [])},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {
            "type": "response.content_part.added",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": part,
        },
    ]
    for word in ("Native", " hello"):
        kinds.append(
            {
                "type": "response.output_text.delta",
                "item_id": item["id"],
                "output_index": 0,
                "content_index": 0,
                "delta": word,
            }
        )
    if "cut" in model:
        return [_event(data, n) for n, data in enumerate(kinds)]
    kinds += [
        {
            "type": "response.output_text.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "text": TEXT,
        },
        {"type": "response.output_item.done", "output_index": 0, "item": _message(TEXT)},
        {"type": "response.completed", "response": _response(model, "completed", [_message(TEXT)])},
    ]
    return [_event(data, n) for n, data in enumerate(kinds)]


class MockResponses:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.app = Starlette(routes=[Route("/v1/responses", self.responses, methods=["POST"])])

    async def responses(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        model = str(body.get("model"))
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return JSONResponse({"error": {"message": "no key", "type": "auth"}}, 401)
        if "fail" in model:
            error = {"message": "overloaded", "type": "server_error", "code": None}
            return JSONResponse({"error": error}, 503)
        if body.get("stream"):

            async def chunks() -> Any:
                for event in _stream(model):
                    yield event

            return StreamingResponse(chunks(), media_type="text/event-stream")
        return JSONResponse(_response(model, "completed", [_message(TEXT)]))
