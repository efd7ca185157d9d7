"""A chat completions upstream that streams a tool call's first argument piece, then holds the
rest until the test opens its gate: what a client sees before then was relayed, not buffered."""

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
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    @property
    def held(self) -> bool:
        return self._held.is_set()

    async def _chat(self, request: Request) -> StreamingResponse:
        body = await request.json()
        return StreamingResponse(self._events(body["model"]), media_type="text/event-stream")

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
        self._held.set()
        await asyncio.to_thread(self.gate.wait, GATE_TIMEOUT_S)
        self._held.clear()
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
