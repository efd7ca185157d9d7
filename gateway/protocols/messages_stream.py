"""The relayed chat stream as the Messages API's event sequence.

``message_start`` and a ``ping`` first; each content block (text, or a ``tool_use`` whose
``input_json_delta``s are the tool call's argument deltas as they come) is started at its first
delta and stopped when the next begins or the answer finishes; ``message_delta`` (stop reason,
exact usage: the chat stream reports it last) and ``message_stop`` end it. An in-band error
becomes an ``error`` event.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.protocols.chat_stream import (
    ChatEvent,
    ChatStreamReader,
    Done,
    Failed,
    Finish,
    Text,
    ToolArguments,
    ToolStart,
    Usage,
)
from gateway.protocols.messages import STOP_REASONS, messages_usage


@dataclass
class MessagesStream:
    message_id: str
    model: str
    _blocks: int = 0  # blocks started
    _open: int | None = None  # the open block's index
    _open_text: bool = False
    _tools: dict[int, int] = field(default_factory=dict)  # chat tool index → block index
    _stop: str = "end_turn"
    _usage: dict[str, int] = field(default_factory=lambda: messages_usage(None))
    _ended: bool = False

    async def events(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        start: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        yield self._event("message_start", message=start) + self._event("ping")
        batches = ChatStreamReader().read(chunks)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                out = []
                for event in batch:
                    if self._ended:
                        break
                    out.append(self._on(event))
                if out:
                    yield b"".join(out)
        if not self._ended:
            yield self._error("api_error", "The upstream stream ended before it was complete.")

    def _on(self, event: ChatEvent) -> bytes:
        if isinstance(event, Text):
            out = b""
            if self._open is None or not self._open_text:
                out = self._start({"type": "text", "text": ""}, text=True)
            text = {"type": "text_delta", "text": event.text}
            return out + self._event("content_block_delta", index=self._open, delta=text)
        if isinstance(event, ToolStart):
            block = {"type": "tool_use", "id": event.call_id, "name": event.name, "input": {}}
            out = self._start(block, text=False)
            self._tools[event.index] = self._blocks - 1
            return out
        if isinstance(event, ToolArguments):
            delta = {"type": "input_json_delta", "partial_json": event.text}
            index = self._tools.get(event.index)
            return (
                b""
                if index is None
                else self._event("content_block_delta", index=index, delta=delta)
            )
        if isinstance(event, Finish):
            self._stop = STOP_REASONS.get(event.reason, "end_turn")
            return self._stop_block()
        if isinstance(event, Usage):
            self._usage = messages_usage(event.usage)
            return b""
        if isinstance(event, Failed):
            return self._error(_error_type(event.error), str(event.error.get("message")))
        assert isinstance(event, Done)
        self._ended = True
        ending: dict[str, Any] = {"stop_reason": self._stop, "stop_sequence": None}
        return (
            self._stop_block()
            + self._event("message_delta", delta=ending, usage=self._usage)
            + self._event("message_stop")
        )

    def _start(self, block: dict[str, Any], *, text: bool) -> bytes:
        out = self._stop_block()
        self._open, self._open_text = self._blocks, text
        self._blocks += 1
        return out + self._event("content_block_start", index=self._open, content_block=block)

    def _stop_block(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return self._event("content_block_stop", index=index)

    def _error(self, kind: str, message: str) -> bytes:
        self._ended = True
        return self._event("error", error={"type": kind, "message": message})

    def _event(self, kind: str, **fields: Any) -> bytes:
        document = {"type": kind, **fields}
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(document) + b"\n\n"


def _error_type(error: dict[str, Any]) -> str:
    """An in-band OpenAI-shaped error's Messages API type."""
    if error.get("type") == "rate_limit_error":
        return "rate_limit_error"
    if "timeout" in str(error.get("code")):
        return "timeout_error"
    if error.get("code") == "overloaded":
        return "overloaded_error"
    return "api_error"
