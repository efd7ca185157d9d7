"""The built-in demo upstream: a simulated OpenAI-compatible API answered without any network.

``gateway serve --demo`` routes to it (see ``gateway.config.demo``). Its answers are
deterministic (the same request gets the same text), streams use real SSE framing with a
usage chunk, and every text says it comes from the demo. Chat requests with ``tools`` or a
JSON ``response_format`` get a tool call or JSON as a model would (``demo_reply``).
``DemoRouter`` wraps the real transport and answers only requests for the reserved demo host;
it is installed only when the config holds the demo upstream, so other configs send exactly as
before.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson

from gateway.config.demo import DEMO_HOST
from gateway.providers import demo_video
from gateway.providers.demo_reply import (
    DEMO_NOTE,
    ChatReply,
    DemoRequestError,
    answer_words,
    chat_reply,
)

_PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
    )
).decode()
EMBEDDING_DIMENSIONS = 16


class DemoRouter(httpx.AsyncBaseTransport):
    """Requests for the demo host go to ``DemoUpstream``; every other one to ``inner``."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.demo = DemoUpstream()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == DEMO_HOST:
            return await self.demo.handle_async_request(request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class DemoUpstream(httpx.AsyncBaseTransport):
    """Answers the OpenAI endpoints the gateway routes to, from the request alone."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        path = request.url.path.removeprefix("/v1")
        if path == "/videos" or path.startswith("/videos/"):
            return demo_video.answer(request.method, path)
        handler = _HANDLERS.get(path)
        if handler is None:
            return _json(404, _error(f"The demo upstream does not serve {path}.", "not_found"))
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                payload = orjson.loads(body or b"{}")
            except orjson.JSONDecodeError:
                return _json(400, _error("The demo upstream got invalid JSON.", "invalid_json"))
        else:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        return handler(payload)


def _chat(payload: dict[str, Any]) -> httpx.Response:
    try:
        reply = chat_reply(payload)
    except DemoRequestError as refused:
        return _json(400, _error(refused.message, "invalid_value", refused.param))
    usage = _usage(_prompt_tokens(payload), len(reply.pieces))
    model = str(payload.get("model", "demo"))
    if payload.get("stream"):
        return _stream_chat(model, reply, usage, _wants_usage(payload))
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_call is not None:
        call = reply.tool_call
        function = {"name": call.name, "arguments": reply.text}
        message |= {
            "content": None,
            "tool_calls": [{"id": call.id, "type": "function", "function": function}],
        }
    choice = {
        "index": 0,
        "message": message,
        "finish_reason": reply.finish_reason,
        "logprobs": None,
    }
    return _json(200, _envelope("chat.completion", model, reply.text, [choice], usage))


def _prompt_tokens(payload: dict[str, Any]) -> int:
    """The messages' tokens, plus the tools' and the response format's as a model counts them."""
    tokens = _count_tokens(orjson.dumps(payload.get("messages", "")))
    for extra in ("tools", "response_format"):
        if payload.get(extra):
            tokens += _count_tokens(orjson.dumps(payload[extra]))
    return tokens


def _completions(payload: dict[str, Any]) -> httpx.Response:
    prompt = payload.get("prompt", "")
    text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
    words = answer_words(text, payload)
    usage = _usage(_count_tokens(text.encode()), len(words))
    model = str(payload.get("model", "demo"))
    if payload.get("stream"):
        return _stream_completion(model, words, usage, _wants_usage(payload))
    choice = {"index": 0, "text": " ".join(words), "finish_reason": "stop", "logprobs": None}
    return _json(200, _envelope("text_completion", model, text, [choice], usage))


def _embeddings(payload: dict[str, Any]) -> httpx.Response:
    raw = payload.get("input", "")
    inputs = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, list) else [raw]
    data = [
        {"object": "embedding", "index": index, "embedding": _vector(str(item))}
        for index, item in enumerate(inputs)
    ]
    tokens = sum(_count_tokens(str(item).encode()) for item in inputs)
    document = {
        "object": "list",
        "model": str(payload.get("model", "demo")),
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return _json(200, document)


def _images(payload: dict[str, Any]) -> httpx.Response:
    count = payload.get("n", 1) if isinstance(payload.get("n", 1), int) else 1
    data = [{"b64_json": _PNG_1X1, "revised_prompt": DEMO_NOTE} for _ in range(max(1, count))]
    return _json(200, {"created": 0, "data": data})


def _speech(payload: dict[str, Any]) -> httpx.Response:
    """One second of silence as 8 kHz 8-bit mono WAV."""
    samples = 8000
    header = (
        b"RIFF" + (36 + samples).to_bytes(4, "little") + b"WAVEfmt "
        + (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
        + (8000).to_bytes(4, "little") + (8000).to_bytes(4, "little")
        + (1).to_bytes(2, "little") + (8).to_bytes(2, "little")
        + b"data" + samples.to_bytes(4, "little")
    )  # fmt: skip
    return httpx.Response(
        200, headers={"content-type": "audio/wav"}, content=header + b"\x80" * samples
    )


def _transcription(payload: dict[str, Any]) -> httpx.Response:
    return _json(200, {"text": f"Demo transcription {DEMO_NOTE}"})


def _moderation(payload: dict[str, Any]) -> httpx.Response:
    result = {"flagged": False, "categories": {}, "category_scores": {}}
    return _json(200, {"id": "modr-demo", "model": "demo", "results": [result]})


def _rerank(payload: dict[str, Any]) -> httpx.Response:
    documents = payload.get("documents", [])
    count = len(documents) if isinstance(documents, list) else 0
    results = [{"index": i, "relevance_score": round(1 / (i + 1), 4)} for i in range(count)]
    return _json(200, {"object": "rerank", "model": "demo", "results": results})


_HANDLERS: dict[str, Callable[[dict[str, Any]], httpx.Response]] = {
    "/chat/completions": _chat,
    "/completions": _completions,
    "/embeddings": _embeddings,
    "/images/generations": _images,
    "/audio/speech": _speech,
    "/audio/transcriptions": _transcription,
    "/audio/translations": _transcription,
    "/moderations": _moderation,
    "/rerank": _rerank,
}


def _count_tokens(data: bytes) -> int:
    return max(1, math.ceil(len(data) / 4))


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _wants_usage(payload: dict[str, Any]) -> bool:
    options = payload.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def _completion_id(kind: str, text: str) -> str:
    return f"{kind}-demo-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _envelope(
    kind: str, model: str, text: str, choices: list[dict[str, Any]], usage: dict[str, int]
) -> dict[str, Any]:
    prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
    return {
        "id": _completion_id(prefix, text),
        "object": kind,
        "created": 0,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def _stream_chat(
    model: str, reply: ChatReply, usage: dict[str, int], with_usage: bool
) -> httpx.Response:
    base: dict[str, Any] = {
        "id": _completion_id("chatcmpl", reply.text),
        "object": "chat.completion.chunk",
    }
    base |= {"created": 0, "model": model}
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    call = reply.tool_call
    if call is None:
        deltas += ({"content": piece} for piece in reply.pieces)
    else:  # OpenAI's shape: the call's id and name first, then its arguments in fragments
        function = {"name": call.name, "arguments": ""}
        first = {"index": 0, "id": call.id, "type": "function", "function": function}
        deltas = [{"role": "assistant", "content": None, "tool_calls": [first]}]
        deltas += (
            {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
            for piece in reply.pieces
        )
    events = [
        base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        for delta in deltas
    ]
    finish = {"index": 0, "delta": {}, "finish_reason": reply.finish_reason}
    events.append(base | {"choices": [finish]})
    if with_usage:
        events.append(base | {"choices": [], "usage": usage})
    return _sse(events)


def _stream_completion(
    model: str, words: list[str], usage: dict[str, int], with_usage: bool
) -> httpx.Response:
    base: dict[str, Any] = {
        "id": _completion_id("cmpl", " ".join(words)),
        "object": "text_completion",
    }
    base |= {"created": 0, "model": model}
    events = [
        base | {"choices": [{"index": 0, "text": (" " if i else "") + w, "finish_reason": None}]}
        for i, w in enumerate(words)
    ]
    events.append(base | {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]})
    if with_usage:
        events.append(base | {"choices": [], "usage": usage})
    return _sse(events)


class _EventStream(httpx.AsyncByteStream):
    def __init__(self, events: list[bytes]) -> None:
        self.events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self.events:
            yield event


def _sse(events: list[dict[str, Any]]) -> httpx.Response:
    frames = [b"data: " + orjson.dumps(event) + b"\n\n" for event in events]
    frames.append(b"data: [DONE]\n\n")
    headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
    return httpx.Response(200, headers=headers, stream=_EventStream(frames))


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(byte - 127.5) / 127.5 for byte in digest[:EMBEDDING_DIMENSIONS]]
    norm = math.sqrt(sum(value * value for value in raw)) or 1.0
    return [round(value / norm, 6) for value in raw]


def _json(status: int, document: dict[str, Any]) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "application/json"}, content=orjson.dumps(document)
    )


def _error(message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }
