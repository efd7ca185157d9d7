"""The relayed chat completions stream read back as typed events, for the bridges' streams.

The gateway's relay hands over whole events; each ``data:`` payload becomes the deltas it
holds, in order. A payload with an ``error`` key is the relay's (or upstream's) in-band error.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.providers.sse import EventSplitter


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolStart:
    index: int
    call_id: str
    name: str


@dataclass(frozen=True)
class ToolArguments:
    index: int
    text: str


@dataclass(frozen=True)
class Finish:
    reason: str


@dataclass(frozen=True)
class Usage:
    usage: dict[str, Any]
    model: str


@dataclass(frozen=True)
class Failed:
    error: dict[str, Any]  # {"message", "type", "param", "code"}


@dataclass(frozen=True)
class Done:
    pass


ChatEvent = Text | ToolStart | ToolArguments | Finish | Usage | Failed | Done
DONE = Done()


class ChatStreamReader:
    """Chat SSE bytes in, ``ChatEvent``s out; ``model`` is the answering model's name."""

    def __init__(self, max_event_bytes: int = 4 * 1024 * 1024) -> None:
        self._events = EventSplitter(max_event_bytes)
        self._tools: set[int] = set()
        self.model = ""

    async def read(self, chunks: AsyncIterable[bytes]) -> AsyncGenerator[list[ChatEvent]]:
        """The events of ``chunks``; ``chunks`` is closed (the relay's metering runs) however
        the reading ends."""
        source = aiter(chunks)
        try:
            async for chunk in source:
                if found := self.feed(chunk):
                    yield found
            if found := self.feed(b"\n\n"):
                yield found
        finally:
            if isinstance(source, AsyncGenerator):
                await source.aclose()

    def feed(self, chunk: bytes) -> list[ChatEvent]:
        out: list[ChatEvent] = []
        complete = self._events.feed(chunk)
        for raw in complete.split(b"\n\n") if complete else ():
            if raw.startswith(b"data: ") and b"\n" not in raw:  # the usual one-line event
                payload = raw[6:]
            else:
                payload = b"\n".join(
                    line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")
                )
            if not payload:
                continue
            if payload.startswith(b"[DONE]"):
                out.append(DONE)
                continue
            try:
                document = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if isinstance(document, dict):
                self._chunk(document, out)
        return out

    def _chunk(self, document: dict[str, Any], out: list[ChatEvent]) -> None:
        error = document.get("error")
        if isinstance(error, dict):
            out.append(Failed(error))
            return
        if isinstance(document.get("model"), str) and not self.model:
            self.model = document["model"]
        for choice in document.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if isinstance(choice.get("finish_reason"), str):
                out.append(Finish(choice["finish_reason"]))
        usage = document.get("usage")
        if isinstance(usage, dict):
            out.append(Usage(usage, self.model))

    def _delta(self, delta: dict[str, Any], out: list[ChatEvent]) -> None:
        for key in ("content", "refusal"):
            text = delta.get(key)
            if isinstance(text, str) and text:
                out.append(Text(text))
        for call in delta.get("tool_calls") or ():
            if not isinstance(call, dict):
                continue
            index = call.get("index", 0)
            index = index if isinstance(index, int) else 0
            found = call.get("function")
            function: dict[str, Any] = found if isinstance(found, dict) else {}
            if index not in self._tools:
                self._tools.add(index)
                out.append(
                    ToolStart(index, str(call.get("id") or ""), str(function.get("name") or ""))
                )
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments:
                out.append(ToolArguments(index, arguments))
