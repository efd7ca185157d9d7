"""Anthropic's Messages stream translated event by event into OpenAI chat completion chunks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from gateway.errors import GatewayError, UpstreamError
from gateway.providers.anthropic import (
    ERROR_TYPES,
    FINISH_REASONS,
    non_negative_int,
    openai_usage,
    tool_call,
)
from gateway.providers.openai import redact
from gateway.providers.sse import EventSplitter, EventTooLarge


@dataclass
class StreamTranslator:
    """Anthropic SSE events in, OpenAI ``chat.completion.chunk`` events out, one by one.

    ``error`` holds the upstream's in-stream error event, if one came."""

    model_name: str
    max_event_bytes: int = 4 * 1024 * 1024
    error: GatewayError | None = None
    _id: str = ""
    _created: int = field(default_factory=lambda: int(time.time()))
    _usage: dict[str, Any] = field(default_factory=dict)
    _tools: dict[int, int] = field(default_factory=dict)  # content block index → tool index
    _events: EventSplitter = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._events = EventSplitter(self.max_event_bytes)

    async def translate(self, first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        if out := self.feed(first):
            yield out
        async for chunk in rest:
            if out := self.feed(chunk):
                yield out

    def feed(self, chunk: bytes) -> bytes:
        try:
            complete = self._events.feed(chunk)
        except EventTooLarge:
            raise httpx.RemoteProtocolError("an upstream stream event is too large") from None
        if not complete:
            return b""
        return b"".join(self._event(raw) for raw in complete[:-2].split(b"\n\n"))

    def _event(self, raw: bytes) -> bytes:
        payload = b"\n".join(
            line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")
        )
        try:
            event = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            return b""
        if not isinstance(event, dict):
            return b""
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self._id = str(message.get("id", ""))
            self._usage.update(message.get("usage") or {})
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            self._usage.update(event.get("usage") or {})
            reason = (event.get("delta") or {}).get("stop_reason")
            return self._chunk({}, FINISH_REASONS.get(str(reason), "stop"))
        if kind == "message_stop":
            usage = self._frame({"choices": [], "usage": openai_usage(self._usage)})
            return usage + b"data: [DONE]\n\n"
        if kind == "error":
            self.error = stream_error(event)
            return b"data: " + orjson.dumps(self.error.body()) + b"\n\n"
        return b""  # ping, content_block_stop, and event types added later

    def _block_start(self, event: dict[str, Any]) -> bytes:
        block = event.get("content_block") or {}
        if block.get("type") != "tool_use":
            text = block.get("text")
            return self._chunk({"content": text}) if text else b""
        index = self._tools[non_negative_int(event.get("index"))] = len(self._tools)
        block = {**block, "input": None}
        return self._chunk({"tool_calls": [tool_call(block, index, with_index=True)]})

    def _block_delta(self, event: dict[str, Any]) -> bytes:
        delta = event.get("delta") or {}
        if delta.get("type") == "text_delta":
            return self._chunk({"content": delta.get("text", "")})
        if delta.get("type") == "input_json_delta":
            index = self._tools.get(non_negative_int(event.get("index")), 0)
            call = {"index": index, "function": {"arguments": delta.get("partial_json", "")}}
            return self._chunk({"tool_calls": [call]})
        return b""  # thinking and signature deltas are not part of the OpenAI shape

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return self._frame({"choices": [choice]})

    def _frame(self, fields: dict[str, Any]) -> bytes:
        document = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model_name,
            **fields,
        }
        return b"data: " + orjson.dumps(document) + b"\n\n"


def stream_error(event: dict[str, Any]) -> UpstreamError:
    error = event.get("error")
    kind = str(error.get("type")) if isinstance(error, dict) else ""
    message = error.get("message") if isinstance(error, dict) else None
    status, type_, code = ERROR_TYPES.get(kind, (502, "api_error", None))
    text = redact(str(message or "The upstream stream reported an error."))
    return UpstreamError(text, status=status, type=type_, code=code or kind or None)
