"""The relayed chat stream as the Responses API's event sequence.

``response.created`` and ``response.in_progress`` first; then each output item is opened as
its first delta arrives (a message with an ``output_text`` part, or a ``function_call``) and
its deltas are sent as they come, tool-call arguments included; the finish closes every open
item, and ``response.completed`` (or ``response.incomplete``) carries the usage, which the
chat stream reports last. An in-band error ends the stream with ``response.failed``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.protocols.chat_stream import (
    ChatEvent,
    ChatStreamReader,
    Failed,
    Finish,
    Text,
    ToolArguments,
    ToolStart,
    Usage,
)
from gateway.protocols.responses import ResponsesCall
from gateway.protocols.responses_answer import (
    function_call_item,
    message_item,
    response_object,
    responses_usage,
)

OnFinal = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class _Item:
    index: int  # output_index
    item: dict[str, Any]
    text: list[str] = field(default_factory=list)  # text or arguments so far
    open: bool = True

    @property
    def is_message(self) -> bool:
        return bool(self.item["type"] == "message")


@dataclass
class ResponsesStream:
    call: ResponsesCall
    response_id: str
    created_at: int
    model: str
    on_final: OnFinal | None = None  # hears the final response object (for the store)
    _sequence: int = 0
    _items: list[_Item] = field(default_factory=list)
    _text: _Item | None = None  # the message item text deltas go to
    _tools: dict[int, _Item] = field(default_factory=dict)  # chat tool index → item
    _finish: str | None = None
    _usage: dict[str, Any] | None = None
    _ended: bool = False
    result: dict[str, Any] | None = None  # the completed response object

    async def events(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        reader = ChatStreamReader()
        start = self._snapshot("in_progress")
        yield self._event("response.created", response=start) + self._event(
            "response.in_progress", response=start
        )
        batches = reader.read(chunks)
        async with contextlib.aclosing(batches):
            async for batch in batches:
                self.model = reader.model or self.model
                out = []
                for event in batch:
                    if self._ended:
                        break
                    out.append(self._on(event))
                if self.result is not None and self.on_final is not None:
                    # kept before the client sees response.completed, so that a next request
                    # naming it as previous_response_id finds it
                    await self.on_final(self.result)
                    self.on_final = None
                if out:
                    yield b"".join(out)
        if not self._ended:
            yield self._failed({"message": "The upstream stream ended before it was complete."})

    def _on(self, event: ChatEvent) -> bytes:
        if isinstance(event, Text):
            return self._text_delta(event.text)
        if isinstance(event, ToolStart):
            return self._tool_start(event)
        if isinstance(event, ToolArguments):
            item = self._tools.get(event.index)
            if item is None:
                return b""
            item.text.append(event.text)
            return self._event(
                "response.function_call_arguments.delta",
                item_id=item.item["id"],
                output_index=item.index,
                delta=event.text,
            )
        if isinstance(event, Finish):
            self._finish = event.reason
            return self._close_all()
        if isinstance(event, Usage):
            self._usage = responses_usage(event.usage)
            return b""
        if isinstance(event, Failed):
            return self._failed(event.error)
        return self._complete()

    def _text_delta(self, text: str) -> bytes:
        out = b""
        item = self._text
        if item is None or not item.open:
            message = message_item("", status="in_progress")
            message["content"] = []
            item = self._text = self._open(message)
            out = self._event(
                "response.output_item.added", output_index=item.index, item=message
            ) + self._event(
                "response.content_part.added",
                item_id=message["id"],
                output_index=item.index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": [], "logprobs": []},
            )
        item.text.append(text)
        return out + self._event(
            "response.output_text.delta",
            item_id=item.item["id"],
            output_index=item.index,
            content_index=0,
            delta=text,
            logprobs=[],
        )

    def _tool_start(self, event: ToolStart) -> bytes:
        self._text = None  # text after a tool call opens a new message item
        call = function_call_item(event.call_id, event.name, "", "in_progress")
        item = self._tools[event.index] = self._open(call)
        return self._event("response.output_item.added", output_index=item.index, item=call)

    def _open(self, item: dict[str, Any]) -> _Item:
        opened = _Item(len(self._items), item)
        self._items.append(opened)
        return opened

    def _close_all(self) -> bytes:
        out = []
        for item in self._items:
            if not item.open:
                continue
            item.open = False
            done = self._done_item(item)
            key = item.item["id"]
            if item.is_message:
                part = done["content"][0]
                common = {"item_id": key, "output_index": item.index, "content_index": 0}
                out.append(
                    self._event(
                        "response.output_text.done", **common, text=part["text"], logprobs=[]
                    )
                )
                out.append(self._event("response.content_part.done", **common, part=part))
            else:
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=key,
                        output_index=item.index,
                        name=done["name"],
                        arguments=done["arguments"],
                    )
                )
            out.append(self._event("response.output_item.done", output_index=item.index, item=done))
        return b"".join(out)

    def _done_item(self, item: _Item) -> dict[str, Any]:
        text = "".join(item.text)
        if item.is_message:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            return {**item.item, "status": "completed", "content": [part]}
        return {**item.item, "status": "completed", "arguments": text}

    @property
    def _final(self) -> dict[str, Any]:
        output = [self._done_item(item) for item in self._items]
        return response_object(
            self.call,
            self.response_id,
            self.created_at,
            model=self.model,
            status="completed",
            output=output,
            usage=self._usage,
            finish_reason=self._finish,
        )

    def _complete(self) -> bytes:
        out = self._close_all()
        self._ended = True
        final = self.result = self._final
        kind = "response.incomplete" if final["status"] == "incomplete" else "response.completed"
        return out + self._event(kind, response=final)

    def _failed(self, error: dict[str, Any]) -> bytes:
        self._ended = True
        failure = {
            "code": str(error.get("code") or "server_error"),
            "message": str(error.get("message") or "The upstream failed."),
        }
        response = self._snapshot("failed", error=failure)
        return self._event("response.failed", response=response)

    def _snapshot(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        output = [self._done_item(item) for item in self._items] if error else []
        return response_object(
            self.call,
            self.response_id,
            self.created_at,
            model=self.model,
            status=status,
            output=output,
            usage=self._usage,
            error=error,
        )

    def _event(self, kind: str, **fields: Any) -> bytes:
        document = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(document) + b"\n\n"
