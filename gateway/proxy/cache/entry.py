"""A cached answer: stored as JSON, replayed whole or as an event stream, assembled from one.

An entry holds the answer as the non-streamed JSON object (``chat.completion``,
``text_completion``, an embeddings list...). A streamed miss is assembled into that shape from
the events the client got; a streamed hit is replayed as events with the live stream's framing:
content chunks, a finish chunk per choice, the usage-only chunk only when the client asked
(``stream_options.include_usage``), then ``[DONE]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

FORMAT = b"gwc1"
STREAMABLE = frozenset({"chat.completion", "text_completion"})


@dataclass(frozen=True)
class Entry:
    stored_at: float  # epoch seconds
    ttl_s: int
    model: str  # the route model that answered
    body: bytes  # the JSON answer

    def fresh(self, now: float) -> bool:
        return now < self.stored_at + self.ttl_s

    def encode(self) -> bytes:
        head = orjson.dumps({"t": self.stored_at, "ttl": self.ttl_s, "m": self.model})
        return FORMAT + b"\n" + head + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """None for anything not written by ``encode`` (the entry is then ignored)."""
        magic, _, rest = raw.partition(b"\n")
        head, _, body = rest.partition(b"\n")
        if magic != FORMAT:
            return None
        try:
            meta = orjson.loads(head)
            return cls(float(meta["t"]), int(meta["ttl"]), str(meta["m"]), body)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def cacheable_json(body: bytes) -> bytes | None:
    """A whole JSON answer as it should be stored: a JSON object without an error, and without
    the gateway's own ``model_source_indicator`` (a hit gets its own); else None."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or "error" in document:
        return None
    if document.pop("model_source_indicator", None) is not None:
        return orjson.dumps(document)
    return body


def replay_events(body: bytes, wants_usage: bool) -> bytes | None:
    """The answer as an event stream, or None when it is not a streamable object."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or document.get("object") not in STREAMABLE:
        return None
    chat = document["object"] == "chat.completion"
    base = {
        "id": document.get("id"),
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": document.get("created"),
        "model": document.get("model"),
    }
    events = []
    for choice in document.get("choices") or ():
        if not isinstance(choice, dict):
            return None
        index = choice.get("index", 0)
        events.append({**base, "choices": [_content_choice(choice, index, chat)]})
        finish = {"index": index, "finish_reason": choice.get("finish_reason") or "stop"}
        events.append(
            {**base, "choices": [{**finish, **({"delta": {}} if chat else {"text": ""})}]}
        )
    usage = document.get("usage")
    if wants_usage and isinstance(usage, dict):
        events.append({**base, "choices": [], "usage": usage})
    out = b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)
    return out + b"data: [DONE]\n\n"


def _content_choice(choice: dict[str, Any], index: int, chat: bool) -> dict[str, Any]:
    if not chat:
        return {"index": index, "text": choice.get("text") or "", "finish_reason": None}
    found = choice.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    delta: dict[str, Any] = {"role": message.get("role") or "assistant"}
    for name in ("content", "refusal"):
        if message.get(name) is not None:
            delta[name] = message[name]
    if isinstance(message.get("tool_calls"), list):
        delta["tool_calls"] = [
            {**call, "index": number} for number, call in enumerate(message["tool_calls"])
        ]
    return {"index": index, "delta": delta, "finish_reason": None}


def assemble(stream: bytes, usage: dict[str, Any] | None) -> bytes | None:
    """The non-streamed answer a complete event stream amounts to; None when an event is not
    a plain chunk (an error, logprobs, anything unparsable): such a stream is not cached."""
    first: dict[str, Any] | None = None
    choices: dict[int, dict[str, Any]] = {}
    for raw in stream.split(b"\n\n"):
        payload = _data(raw)
        if payload is None or payload == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            return None
        first = first or chunk
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("logprobs") is not None:
                return None
            _merge(choices.setdefault(int(choice.get("index", 0)), {}), choice)
    if first is None or not choices:
        return None
    chat = first.get("object") == "chat.completion.chunk"
    document = {
        "id": first.get("id"),
        "object": "chat.completion" if chat else "text_completion",
        "created": first.get("created"),
        "model": first.get("model"),
        "choices": [_finished(choices[i], i, chat) for i in sorted(choices)],
    }
    if usage is not None:
        document["usage"] = usage
    return orjson.dumps(document)


def _data(raw: bytes) -> bytes | None:
    lines = [line[5:].lstrip(b" ") for line in raw.split(b"\n") if line.startswith(b"data:")]
    return b"\n".join(lines) if lines else None


def _merge(into: dict[str, Any], choice: dict[str, Any]) -> None:
    if choice.get("finish_reason"):
        into["finish_reason"] = choice["finish_reason"]
    if isinstance(choice.get("text"), str):
        into["text"] = into.get("text", "") + choice["text"]
    delta = choice.get("delta")
    if not isinstance(delta, dict):
        return
    if delta.get("role"):
        into["role"] = delta["role"]
    for name in ("content", "refusal"):
        if isinstance(delta.get(name), str):
            into[name] = into.get(name, "") + delta[name]
    for call in delta.get("tool_calls") or ():
        if isinstance(call, dict):
            _merge_call(into.setdefault("tool_calls", {}), call)


def _merge_call(calls: dict[int, dict[str, Any]], call: dict[str, Any]) -> None:
    merged = calls.setdefault(int(call.get("index", 0)), {"function": {}})
    for name in ("id", "type"):
        if call.get(name):
            merged[name] = call[name]
    found = call.get("function")
    function: dict[str, Any] = found if isinstance(found, dict) else {}
    for name in ("name", "arguments"):
        if isinstance(function.get(name), str):
            merged["function"][name] = merged["function"].get(name, "") + function[name]


def _finished(parts: dict[str, Any], index: int, chat: bool) -> dict[str, Any]:
    finish = parts.get("finish_reason") or "stop"
    if not chat:
        return {"index": index, "text": parts.get("text", ""), "finish_reason": finish}
    message: dict[str, Any] = {"role": parts.get("role", "assistant")}
    message["content"] = parts.get("content")
    if "refusal" in parts:
        message["refusal"] = parts["refusal"]
    if "tool_calls" in parts:
        message["tool_calls"] = [parts["tool_calls"][n] for n in sorted(parts["tool_calls"])]
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}
