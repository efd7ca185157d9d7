"""An upstream that streams a tool call's first argument piece, then holds the rest until the
test opens its gate: what a client sees before then was relayed, not buffered. It speaks chat
completions (``/v1/chat/completions``) and Anthropic's Messages API (``/v1/messages``)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tests.support import ThreadedServer

FIRST, REST = '{"cit', 'y": "Paris"}'
GATE_TIMEOUT_S = 10  # a bridge that buffers meets the timeout instead of the test's opening


class GatedUpstream:
    """Each streamed request: the tool call's opening and first argument piece, then a wait on
    ``gate``; ``held`` is true while a stream waits there."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self._held = threading.Event()
        self.url = ""
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
            ]
        )

    @property
    def held(self) -> bool:
        return self._held.is_set()

    async def _chat(self, request: Request) -> StreamingResponse:
        body = await request.json()
        return StreamingResponse(self._events(body["model"]), media_type="text/event-stream")

    async def _hold(self) -> None:
        self._held.set()
        await asyncio.to_thread(self.gate.wait, GATE_TIMEOUT_S)
        self._held.clear()

    async def _messages(self, request: Request) -> StreamingResponse:
        body = await request.json()
        return StreamingResponse(self._anthropic(body["model"]), media_type="text/event-stream")

    async def _anthropic(self, model: str) -> AsyncIterator[bytes]:
        def event(kind: str, **data: Any) -> bytes:
            return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

        def arguments(piece: str) -> bytes:
            delta = {"type": "input_json_delta", "partial_json": piece}
            return event("content_block_delta", index=0, delta=delta)

        message = {"id": "msg_gated", "type": "message", "role": "assistant", "content": []}
        message.update(model=model, stop_reason=None, stop_sequence=None)
        message["usage"] = {"input_tokens": 9, "output_tokens": 1}
        yield event("message_start", message=message)
        block = {"type": "tool_use", "id": "toolu_gated", "name": "get_weather", "input": {}}
        yield event("content_block_start", index=0, content_block=block)
        yield arguments(FIRST)
        await self._hold()
        yield arguments(REST)
        yield event("content_block_stop", index=0)
        delta = {"stop_reason": "tool_use", "stop_sequence": None}
        yield event("message_delta", delta=delta, usage={"output_tokens": 4})
        yield event("message_stop")

    async def _events(self, model: str) -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            payload = {"id": "chatcmpl-gated", "object": "chat.completion.chunk", "created": 1}
            payload.update(model=model, choices=[choice] if delta or finish else [], **extra)
            return f"data: {json.dumps(payload)}\n\n".encode()

        call = {"index": 0, "id": "call_gated", "type": "function"}
        call["function"] = {"name": "get_weather", "arguments": ""}
        yield chunk({"role": "assistant", "content": None, "tool_calls": [call]})
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": FIRST}}]})
        await self._hold()
        yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": REST}}]})
        yield chunk({}, "tool_calls")
        usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
        yield chunk({}, usage=usage)
        yield b"data: [DONE]\n\n"


@contextmanager
def running_gated_upstream() -> Iterator[GatedUpstream]:
    upstream = GatedUpstream()
    server = ThreadedServer(upstream.app).start()
    upstream.url = server.url + "/v1"
    try:
        yield upstream
    finally:
        upstream.gate.set()
        server.stop()
