"""A real local HTTP server that emulates an OpenAI-compatible / Together-like upstream.

Used by the gateway's integration tests: start a :class:`MockUpstream`, point the gateway at its
``base_url`` and choose the upstream's behaviour through the model id of each request.  The last
path segment of the model id is split on ``+`` into markers (``x/y/flaky-2+slow-20`` gives
``flaky-2`` and ``slow-20``); unknown markers are ignored, so any ordinary id just succeeds.

Markers:
    fail-500 / fail-502 / fail-503   always that status, OpenAI-shaped JSON error
    fail-429                         always 429 + ``retry-after: 1``, Together-style body
    notfound                         404 Together-style, code ``model_not_found``
    unavailable                      400 Together-style, code ``model_not_available``
    bad-400                          400 flat vLLM style ``{"object": "error", ...}``
    auth-401                         401 whose message echoes the Authorization header received
    plain-502                        502 ``text/plain`` body ``upstream proxy error``
    flaky-N                          the first N requests for this model id answer 503
    ratelimited-N                    the first N requests answer 429 with ``retry-after-ms: 50``
    slowfirst-S                      sleep S seconds (float) before the status line
    drop-K                           streams: K content chunks, then the connection is cut;
                                     other requests: the connection is closed without a response
    slow-MS                          streams: sleep MS milliseconds between chunks
    linger-MS                        streams: sleep MS milliseconds after the last event
                                     (``[DONE]``) before the body's end
    words-N                          the answer has N words (default 5)
    nousage                          never report usage
    absurd-usage                     report 10,000,000 prompt and completion tokens
    usage-on-finish                  streams: usage on the finish chunk, no usage-only chunk
    crlf                             ``\\r\\n`` line endings in SSE streams
    toolcall                         chat: when ``tools`` are sent and the last message is not a
                                     tool result, call the first tool (or the one tool_choice
                                     names) with arguments shaped by its schema; streamed, the
                                     arguments come in three deltas
    json                             chat: with ``response_format`` json_schema, answer a JSON
                                     document shaped by the schema (json_object: ``{"ok": true}``)
    length                           chat: an answer cut short by ``max_tokens`` finishes with
                                     ``length`` (else ``stop``, whatever the limit)

Run ``python tests/mock_upstream.py --port 9000`` to serve in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSONDict = dict[str, Any]

_TRANSPORT_KEY = "mock_upstream.transport"
_REQUEST_ID_KEY = "mock_upstream.request_id"
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_CREATED = 1_700_000_000
_DEFAULT_WORDS = 5
ABSURD_TOKENS = 10_000_000  # what an ``absurd-usage`` model reports for each kind
_EMBEDDING_DIM = 8
_SPEECH_CHUNKS = 4
_SPEECH_CHUNK_SIZE = 1024
_SPEECH_DELAY_S = 0.01
_MAX_PART_SIZE = 64 * 1024 * 1024
_DEFAULT_MODELS = (
    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "mock/chat-model",
    "BAAI/bge-base-en-v1.5",
)
_FIXED_FAILURES = frozenset(
    {
        "fail-500",
        "fail-502",
        "fail-503",
        "fail-429",
        "notfound",
        "unavailable",
        "bad-400",
        "auth-401",
        "plain-502",
    }
)
_NUMERIC_MARKER = re.compile(
    r"^(flaky|ratelimited|slowfirst|drop|slow|linger|words)-(\d+(?:\.\d+)?)$"
)
_MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "pcm": "audio/pcm",
}
# A 1x1 transparent PNG.
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


# --------------------------------------------------------------------------- recorded requests


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the mock received it."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    json: JSONDict | None  # parsed JSON body, when JSON
    form: dict[str, str] | None  # multipart text fields, when multipart
    file_sizes: dict[str, int] = field(default_factory=dict)  # multipart file field -> bytes

    @property
    def model(self) -> str | None:
        """The model id of the request (JSON ``model`` or form field ``model``), if any."""
        source: Mapping[str, Any] = self.json or self.form or {}
        value = source.get("model")
        return None if value is None else str(value)


class _State:
    """Recorded requests and per-model counters, shared between the server and test threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._counts: dict[str, int] = {}

    def record(self, request: RecordedRequest) -> int:
        """Store the request; return how many requests (this one included) used its model id."""
        model = request.model if request.method == "POST" else None
        with self._lock:
            self._requests.append(request)
            if model is None:
                return 0
            self._counts[model] = self._counts.get(model, 0) + 1
            return self._counts[model]

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self, model: str) -> int:
        with self._lock:
            return self._counts.get(model, 0)

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._counts.clear()


# --------------------------------------------------------------------------- markers


@dataclass(frozen=True)
class Markers:
    """Behaviour selected by the model id."""

    fixed_failure: str | None = None
    flaky: int = 0
    ratelimited: int = 0
    slowfirst: float = 0.0
    drop: int | None = None
    slow_ms: float = 0.0
    linger_ms: float = 0.0
    words: int = _DEFAULT_WORDS
    nousage: bool = False
    usage_on_finish: bool = False
    crlf: bool = False
    toolcall: bool = False
    json: bool = False
    length: bool = False
    absurd_usage: bool = False


def parse_markers(model: str | None) -> Markers:
    """Parse the markers out of the last path segment of ``model``."""
    if not model:
        return Markers()
    values: dict[str, Any] = {}
    for marker in model.rsplit("/", 1)[-1].split("+"):
        _apply_marker(marker, values)
    return Markers(**values)


def _apply_marker(marker: str, values: dict[str, Any]) -> None:
    if marker in _FIXED_FAILURES:
        values.setdefault("fixed_failure", marker)
    elif marker in ("nousage", "crlf", "toolcall", "json", "length"):
        values[marker] = True
    elif marker == "usage-on-finish":
        values["usage_on_finish"] = True
    elif marker == "absurd-usage":
        values["absurd_usage"] = True
    elif match := _NUMERIC_MARKER.match(marker):
        name, number = match.group(1), float(match.group(2))
        if name in ("slowfirst", "slow", "linger"):
            values[{"slow": "slow_ms", "linger": "linger_ms"}.get(name, name)] = number
        else:
            values[name] = int(number)


# --------------------------------------------------------------------------- errors


def _error_body(message: str, type_: str, code: str | int | None = None) -> JSONDict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def openai_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(_error_body(message, type_, code), status_code=status, headers=headers)


def _together_error(
    status: int,
    message: str,
    type_: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"id": f"err-{uuid.uuid4().hex[:16]}", **_error_body(message, type_, code)}
    return JSONResponse(body, status_code=status, headers=headers)


def _rate_limited(retry_after_ms: int | None = None) -> JSONResponse:
    headers = {"retry-after": "1"}
    if retry_after_ms is not None:
        headers["retry-after-ms"] = str(retry_after_ms)
    message = "You have been rate limited by the mock upstream. Please try again shortly."
    return _together_error(429, message, "dynamic_request_limited", headers=headers)


def _fixed_failure(name: str, model: str, authorization: str) -> Response:
    if name in ("fail-500", "fail-502", "fail-503"):
        status = int(name[-3:])
        return openai_error(status, f"mock upstream failure ({status})", "server_error")
    if name == "fail-429":
        return _rate_limited()
    if name == "notfound":
        message = (
            f"Unable to access model {model}. Please visit https://api.together.ai/models "
            "to view the list of supported models."
        )
        return _together_error(404, message, "invalid_request_error", "model_not_found")
    if name == "unavailable":
        message = f"Model {model} is not available right now."
        return _together_error(400, message, "invalid_request_error", "model_not_available")
    if name == "bad-400":
        body = {
            "object": "error",
            "message": f"Bad request for model {model}",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        }
        return JSONResponse(body, status_code=400)
    if name == "auth-401":
        message = f"Invalid API key provided: {authorization}"
        return openai_error(401, message, "invalid_request_error", "invalid_api_key")
    return PlainTextResponse("upstream proxy error", status_code=502)  # plain-502


def _failure(markers: Markers, model: str, attempt: int, authorization: str) -> Response | None:
    """The failure response selected by the markers for this attempt, if any."""
    if markers.fixed_failure is not None:
        return _fixed_failure(markers.fixed_failure, model, authorization)
    if 0 < attempt <= markers.flaky:
        message = f"mock upstream is flaky (attempt {attempt} of {markers.flaky} failing)"
        return openai_error(503, message, "server_error")
    if 0 < attempt <= markers.ratelimited:
        return _rate_limited(retry_after_ms=50)
    return None


# --------------------------------------------------------------------------- streaming responses


def _transport(scope: Scope) -> asyncio.BaseTransport | None:
    transport = scope.get(_TRANSPORT_KEY)
    return transport if isinstance(transport, asyncio.BaseTransport) else None


async def _hang_up(scope: Scope, receive: Receive) -> None:
    """Cut the TCP connection, leaving whatever was already sent incomplete."""
    transport = _transport(scope)
    if transport is None:
        raise RuntimeError("mock upstream: cannot reach the transport to cut the connection")
    transport.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_wait_disconnect(receive), timeout=2.0)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _HangUp(Response):
    """Close the connection without sending any response."""

    def __init__(self) -> None:  # no status line, no headers, no body
        self.background = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _hang_up(scope, receive)


class _ChunkStream(Response):
    """Chunked response sending ``chunks`` with ``delay`` seconds between them.

    With ``cut`` the connection is cut after the last chunk instead of finishing the body.
    """

    def __init__(
        self,
        chunks: Sequence[bytes],
        *,
        media_type: str,
        delay: float = 0.0,
        cut: bool = False,
        linger: float = 0.0,
    ) -> None:
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"cache-control": "no-cache"})
        self._chunks = chunks
        self._delay = delay
        self._cut = cut
        self._linger = linger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {
            "type": "http.response.start",
            "status": self.status_code,
            "headers": self.raw_headers,
        }
        await send(start)
        for index, chunk in enumerate(self._chunks):
            if index and self._delay:
                await asyncio.sleep(self._delay)
            if _client_gone(scope):
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if self._linger:
            await asyncio.sleep(self._linger)
            if _client_gone(scope):
                return
        if self._cut:
            await _hang_up(scope, receive)
        else:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


def _client_gone(scope: Scope) -> bool:
    transport = _transport(scope)
    return transport is not None and transport.is_closing()


# --------------------------------------------------------------------------- text and tokens


def _words(text: str) -> int:
    return len(text.split())


def _content_words(content: Any) -> int:
    if isinstance(content, str):
        return _words(content)
    if isinstance(content, list):
        return sum(
            _words(str(part.get("text", "")))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return 0


def _chat_prompt_tokens(body: JSONDict) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(_content_words(m.get("content")) + 1 for m in messages if isinstance(m, dict))


def _prompt_items(value: Any) -> list[Any]:
    """Normalise a ``prompt``/``input`` value into a list of strings or token arrays."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    return list(value) if isinstance(value, list) else [str(value)]


def _item_tokens(item: Any) -> int:
    return len(item) if isinstance(item, list) else _words(str(item))


def _completion_prompt_tokens(body: JSONDict) -> int:
    return sum(_item_tokens(item) + 1 for item in _prompt_items(body.get("prompt")))


def _answer_words(model: str, markers: Markers, body: JSONDict) -> list[str]:
    count = markers.words
    for key in ("max_tokens", "max_completion_tokens"):
        limit = body.get(key)
        if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 0:
            count = min(count, limit)
    base = ["Hello", "from", "".join(model.split()) or "mock"]
    return [base[i] if i < len(base) else f"w{i + 1}" for i in range(count)]


def _usage(prompt_tokens: int, completion_tokens: int) -> JSONDict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _reported(markers: Markers, prompt_tokens: int, completion_tokens: int) -> JSONDict:
    """The usage the mock reports: the real counts, or absurd ones (``absurd-usage``)."""
    if markers.absurd_usage:
        return _usage(ABSURD_TOKENS, ABSURD_TOKENS)
    return _usage(prompt_tokens, completion_tokens)


# --------------------------------------------------------------------------- SSE streams


@dataclass(frozen=True)
class _UsagePlan:
    usage: JSONDict | None  # None: never report usage
    on_finish: bool  # Together style: usage on the finish chunk
    separate: bool  # OpenAI style: usage-only chunk before [DONE]

    @property
    def null_on_others(self) -> bool:
        return self.usage is not None and (self.on_finish or self.separate)


def _usage_plan(markers: Markers, body: JSONDict, usage: JSONDict) -> _UsagePlan:
    if markers.nousage:
        return _UsagePlan(None, on_finish=False, separate=False)
    options = body.get("stream_options")
    include = isinstance(options, dict) and options.get("include_usage") is True
    if markers.usage_on_finish:
        return _UsagePlan(usage, on_finish=True, separate=False)
    return _UsagePlan(usage, on_finish=False, separate=include)


@dataclass(frozen=True)
class _StreamPlan:
    head: list[JSONDict]  # chunks before the content
    content: list[JSONDict]  # one chunk per word
    tail: list[JSONDict]  # finish chunk, usage-only chunk


def _with_usage(chunk: JSONDict, plan: _UsagePlan, finish: bool) -> JSONDict:
    if plan.usage is None:
        return chunk
    if finish and plan.on_finish:
        return {**chunk, "usage": plan.usage}
    return {**chunk, "usage": None} if plan.null_on_others else chunk


def _stream_plan(
    base: JSONDict,
    choice: Callable[[Any, str | None], JSONDict],
    role: Any,
    words: list[str],
    plan: _UsagePlan,
    finish: str = "stop",
) -> _StreamPlan:
    def chunk(payload: Any, finish_reason: str | None = None) -> JSONDict:
        body = {**base, "choices": [choice(payload, finish_reason)]}
        return _with_usage(body, plan, finish_reason is not None)

    pieces = [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]
    head = [chunk(role)] if role is not None else []
    tail = [chunk(None, finish)]
    if plan.separate and plan.usage is not None:
        tail.append({**base, "choices": [], "usage": plan.usage})
    return _StreamPlan(head, [chunk(piece) for piece in pieces], tail)


def _dumps(chunk: JSONDict) -> str:
    return json.dumps(chunk, separators=(",", ":"))


def _sse_response(stream: _StreamPlan, markers: Markers) -> _ChunkStream:
    eol = "\r\n" if markers.crlf else "\n"

    def event(data: str) -> bytes:
        return f"data: {data}{eol}{eol}".encode()

    events = [_dumps(c) for c in stream.head]
    if markers.drop is not None:
        events += [_dumps(c) for c in stream.content[: markers.drop]]
    else:
        events += [_dumps(c) for c in (*stream.content, *stream.tail)] + ["[DONE]"]
    return _ChunkStream(
        [event(e) for e in events],
        media_type="text/event-stream",
        delay=markers.slow_ms / 1000,
        cut=markers.drop is not None,
        linger=markers.linger_ms / 1000,
    )


# --------------------------------------------------------------------------- endpoint handlers


@dataclass(frozen=True)
class Incoming:
    """A parsed request handed to an endpoint handler."""

    request: Request
    body: JSONDict  # JSON body, or the multipart text fields
    file_sizes: dict[str, int]
    model: str
    markers: Markers

    @property
    def stream(self) -> bool:
        return self.body.get("stream") is True


Handler = Callable[[Incoming], Awaitable[Response]]


def _completion_id(prefix: str) -> str:
    return f"{prefix}-mock-{uuid.uuid4().hex[:12]}"


def _delta(payload: Any) -> JSONDict:
    """Chat delta: ``None`` for the finish chunk, a dict as is, a string as content."""
    if payload is None:
        return {}
    return payload if isinstance(payload, dict) else {"content": payload}


def schema_sample(schema: Any) -> Any:
    """A value that fits a JSON schema (the common keywords only)."""
    if not isinstance(schema, dict):
        return None
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {name: schema_sample(sub) for name, sub in properties.items()}
    if kind == "array":
        return [schema_sample(schema.get("items"))]
    return {"string": "Paris", "integer": 3, "number": 1.5, "boolean": True}.get(str(kind))


def _tool_call_answer(body: JSONDict) -> JSONDict | None:
    """The tool call a ``toolcall`` model makes, or None when it answers in text."""
    tools = body.get("tools")
    messages = body.get("messages") or [{}]
    if not tools or body.get("tool_choice") == "none" or messages[-1].get("role") == "tool":
        return None
    function = tools[0]["function"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        wanted = choice["function"]["name"]
        function = next(t["function"] for t in tools if t["function"]["name"] == wanted)
    arguments = json.dumps(schema_sample(function.get("parameters")) or {})
    return {
        "id": f"call_mock_{uuid.uuid4().hex[:8]}",
        "name": function["name"],
        "arguments": arguments,
    }


def _json_answer(body: JSONDict) -> str | None:
    form = body.get("response_format")
    if not isinstance(form, dict):
        return None
    if form.get("type") == "json_schema":
        return json.dumps(schema_sample(form["json_schema"].get("schema")))
    return '{"ok": true}' if form.get("type") == "json_object" else None


def _tool_call_stream(base: JSONDict, call: JSONDict, plan: _UsagePlan) -> _StreamPlan:
    def chunk(delta: JSONDict, finish_reason: str | None = None) -> JSONDict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return _with_usage({**base, "choices": [choice]}, plan, finish_reason is not None)

    raw = call["arguments"]
    third = max(1, len(raw) // 3)
    pieces = [raw[:third], raw[third : 2 * third], raw[2 * third :]]
    opening = {"index": 0, "id": call["id"], "type": "function"}
    opening["function"] = {"name": call["name"], "arguments": ""}
    content = [chunk({"role": "assistant", "content": None, "tool_calls": [opening]})]
    content += [
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}) for piece in pieces
    ]
    tail = [chunk({}, "tool_calls")]
    if plan.separate and plan.usage is not None:
        tail.append({**base, "choices": [], "usage": plan.usage})
    return _StreamPlan([], content, tail)


async def chat_completions(incoming: Incoming) -> Response:
    body, model, markers = incoming.body, incoming.model, incoming.markers
    call = _tool_call_answer(body) if markers.toolcall else None
    answer = _json_answer(body) if markers.json else None
    if call is not None or answer is not None:
        return _special_answer(incoming, call, answer)
    words = _answer_words(model, markers, body)
    usage = _reported(markers, _chat_prompt_tokens(body), len(words))
    finish = "length" if markers.length and len(words) < markers.words else "stop"
    created = int(time.time())
    if incoming.stream:
        base = {
            "id": _completion_id("chatcmpl"),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }

        def choice(delta: Any, finish_reason: str | None) -> JSONDict:
            return {
                "index": 0,
                "delta": _delta(delta),
                "logprobs": None,
                "finish_reason": finish_reason,
            }

        role = {"role": "assistant", "content": ""}
        usage_plan = _usage_plan(markers, body, usage)
        plan = _stream_plan(base, choice, role, words, usage_plan, finish)
        return _sse_response(plan, markers)
    message = {"role": "assistant", "content": " ".join(words)}
    result: JSONDict = {
        "id": _completion_id("chatcmpl"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if not markers.nousage:
        result["usage"] = usage
    return JSONResponse(result)


def _special_answer(incoming: Incoming, call: JSONDict | None, answer: str | None) -> Response:
    """A tool call (``toolcall``) or a JSON document (``json``) instead of words."""
    body, model, markers = incoming.body, incoming.model, incoming.markers
    completion_tokens = 7 if call is not None else max(1, len(answer or "") // 4)
    usage = _usage(_chat_prompt_tokens(body), completion_tokens)
    base = {
        "id": _completion_id("chatcmpl"),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }
    plan = _usage_plan(markers, body, usage)
    if incoming.stream and call is not None:
        return _sse_response(_tool_call_stream(base, call, plan), markers)
    if incoming.stream:
        assert answer is not None
        words = [answer[i : i + 8] for i in range(0, len(answer), 8)]

        def choice(delta: Any, finish_reason: str | None) -> JSONDict:
            return {"index": 0, "delta": _delta(delta), "finish_reason": finish_reason}

        role = {"role": "assistant", "content": ""}
        stream = _stream_plan(base, choice, role, [], plan)
        pieces = [
            {
                **base,
                "choices": [choice(piece, None)],
                **({"usage": None} if plan.null_on_others else {}),
            }
            for piece in words
        ]
        return _sse_response(_StreamPlan(stream.head, pieces, stream.tail), markers)
    message: JSONDict = {"role": "assistant", "content": answer}
    finish = "stop"
    if call is not None:
        function = {"name": call["name"], "arguments": call["arguments"]}
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": call["id"], "type": "function", "function": function}],
        }
        finish = "tool_calls"
    result: JSONDict = {
        **base,
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
    }
    if not markers.nousage:
        result["usage"] = usage
    return JSONResponse(result)


async def completions(incoming: Incoming) -> Response:
    body, model, markers = incoming.body, incoming.model, incoming.markers
    words = _answer_words(model, markers, body)
    usage = _reported(markers, _completion_prompt_tokens(body), len(words))
    base = {
        "id": _completion_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    if incoming.stream:

        def choice(text: Any, finish_reason: str | None) -> JSONDict:
            return {
                "index": 0,
                "text": text or "",
                "logprobs": None,
                "finish_reason": finish_reason,
            }

        plan = _stream_plan(base, choice, None, words, _usage_plan(markers, body, usage))
        return _sse_response(plan, markers)
    choice_ = {"index": 0, "text": " ".join(words), "logprobs": None, "finish_reason": "stop"}
    result: JSONDict = {**base, "choices": [choice_]}
    if not markers.nousage:
        result["usage"] = usage
    return JSONResponse(result)


def _embedding_vector(item: Any) -> tuple[float, ...]:
    digest = hashlib.sha256(json.dumps(item).encode()).digest()
    raw = [(b / 127.5) - 1.0 for b in digest[:_EMBEDDING_DIM]]
    return struct.unpack(f"<{_EMBEDDING_DIM}f", struct.pack(f"<{_EMBEDDING_DIM}f", *raw))


def _encode_embedding(vector: tuple[float, ...], encoding_format: Any) -> Any:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return list(vector)


async def embeddings(incoming: Incoming) -> Response:
    items = _prompt_items(incoming.body.get("input"))
    fmt = incoming.body.get("encoding_format")
    data = [
        {
            "object": "embedding",
            "index": i,
            "embedding": _encode_embedding(_embedding_vector(item), fmt),
        }
        for i, item in enumerate(items)
    ]
    result: JSONDict = {"object": "list", "data": data, "model": incoming.model}
    if not incoming.markers.nousage:
        tokens = sum(_item_tokens(item) for item in items)
        result["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return JSONResponse(result)


async def image_generations(incoming: Incoming) -> Response:
    n = incoming.body.get("n")
    count = n if isinstance(n, int) and n > 0 else 1
    if incoming.body.get("response_format") in ("b64_json", "base64"):
        image: JSONDict = {"b64_json": base64.b64encode(_PNG).decode()}
    else:
        image = {"url": "http://127.0.0.1/img.png"}
    return JSONResponse({"created": int(time.time()), "data": [dict(image) for _ in range(count)]})


def _speech_bytes() -> bytes:
    size = _SPEECH_CHUNKS * _SPEECH_CHUNK_SIZE
    header = b"ID3\x04\x00\x00\x00\x00\x00\x00"
    return header + bytes((i * 7) % 256 for i in range(size - len(header)))


async def audio_speech(incoming: Incoming) -> Response:
    audio = _speech_bytes()
    chunks = [audio[i : i + _SPEECH_CHUNK_SIZE] for i in range(0, len(audio), _SPEECH_CHUNK_SIZE)]
    markers = incoming.markers
    if markers.drop is not None:
        chunks = chunks[: markers.drop]
    delay = markers.slow_ms / 1000 if markers.slow_ms else _SPEECH_DELAY_S
    media_type = _AUDIO_TYPES.get(str(incoming.body.get("response_format")), "audio/mpeg")
    return _ChunkStream(chunks, media_type=media_type, delay=delay, cut=markers.drop is not None)


async def audio_transcriptions(incoming: Incoming) -> Response:
    if "file" not in incoming.file_sizes:
        return openai_error(400, "multipart field 'file' is required", "invalid_request_error")
    text = f"transcribed {incoming.file_sizes['file']} bytes"
    response_format = incoming.body.get("response_format", "json")
    if response_format in ("text", "srt", "vtt"):
        return PlainTextResponse(text)
    result: JSONDict = {"text": text}
    if response_format == "verbose_json":
        result.update(language=incoming.body.get("language", "english"), duration=1.0, segments=[])
    return JSONResponse(result)


async def moderations(incoming: Incoming) -> Response:
    items = _prompt_items(incoming.body.get("input")) or [""]
    result = {
        "flagged": False,
        "categories": dict.fromkeys(_MODERATION_CATEGORIES, False),
        "category_scores": dict.fromkeys(_MODERATION_CATEGORIES, 0.0),
    }
    return JSONResponse(
        {
            "id": _completion_id("modr"),
            "model": incoming.model or "omni-moderation-latest",
            "results": [dict(result) for _ in items],
        }
    )


def _document_text(document: Any) -> str:
    if isinstance(document, dict):
        return str(document.get("text", json.dumps(document)))
    return str(document)


async def rerank(incoming: Incoming) -> Response:
    body = incoming.body
    query_words = set(str(body.get("query", "")).lower().split())
    documents = [_document_text(d) for d in body.get("documents") or []]
    scored = []
    for index, text in enumerate(documents):
        overlap = len(query_words & set(text.lower().split()))
        scored.append((round((overlap + 1) / (len(query_words) + 1) / (1 + index / 100), 6), index))
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    top_n = body.get("top_n")
    if isinstance(top_n, int) and top_n > 0:
        scored = scored[:top_n]
    results = [
        _rerank_result(i, s, documents, body.get("return_documents") is True) for s, i in scored
    ]
    tokens = len(query_words) + sum(_words(text) for text in documents)
    return JSONResponse(
        {
            "id": _completion_id("rerank"),
            "model": incoming.model,
            "object": "rerank",
            "results": results,
            "usage": _usage(tokens, 0),
        }
    )


def _rerank_result(index: int, score: float, documents: list[str], with_doc: bool) -> JSONDict:
    result: JSONDict = {"index": index, "relevance_score": score}
    if with_doc:
        result["document"] = {"text": documents[index]}
    return result


async def video_generations(incoming: Incoming) -> Response:
    return JSONResponse({"id": "video-1", "model": incoming.model, "status": "queued"})


# --------------------------------------------------------------------------- request parsing


class _BadRequest(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Parsed:
    json: JSONDict | None = None
    form: dict[str, str] | None = None
    file_sizes: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _headers(request: Request) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def _parse_body(request: Request) -> _Parsed:
    if request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return _Parsed()
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            return await _parse_form(request)
        return _parse_json(await request.body())
    except _BadRequest as exc:
        return _Parsed(error=exc.message)


def _parse_json(raw: bytes) -> _Parsed:
    if not raw.strip():
        return _Parsed()
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadRequest(f"Invalid JSON body: {exc}") from exc
    if not isinstance(value, dict):
        raise _BadRequest("The request body must be a JSON object")
    return _Parsed(json=value)


async def _parse_form(request: Request) -> _Parsed:
    try:
        form = await request.form(max_part_size=_MAX_PART_SIZE)
    except HTTPException as exc:
        raise _BadRequest(f"Invalid form body: {exc.detail}") from exc
    try:
        fields: dict[str, str] = {}
        sizes: dict[str, int] = {}
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                sizes[name] = value.size if value.size is not None else len(await value.read())
            else:
                fields[name] = value
        return _Parsed(form=fields, file_sizes=sizes)
    finally:
        await form.close()


# --------------------------------------------------------------------------- application


class _MockApp:
    """The Starlette endpoints, bound to one server's recorded state."""

    def __init__(self, state: _State, models_format: str, models: Sequence[str]) -> None:
        self.state = state
        self.models_format = models_format
        self.models = tuple(models)

    async def _record(self, request: Request) -> tuple[RecordedRequest, _Parsed, int]:
        parsed = await _parse_body(request)
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers=_headers(request),
            json=parsed.json,
            form=parsed.form,
            file_sizes=dict(parsed.file_sizes),
        )
        return recorded, parsed, self.state.record(recorded)

    def endpoint(
        self, handler: Handler, *, streaming: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            return await self._dispatch(request, handler, streaming)

        return run

    async def _dispatch(self, request: Request, handler: Handler, streaming: bool) -> Response:
        recorded, parsed, attempt = await self._record(request)
        if parsed.error is not None:
            return openai_error(400, parsed.error, "invalid_request_error")
        model = recorded.model or ""
        markers = parse_markers(model)
        if markers.slowfirst:
            await asyncio.sleep(markers.slowfirst)
        authorization = recorded.headers.get("authorization", "")
        failure = _failure(markers, model, attempt, authorization)
        if failure is not None:
            return failure
        body = parsed.json if parsed.json is not None else dict(parsed.form or {})
        incoming = Incoming(request, body, parsed.file_sizes, model, markers)
        if markers.drop is not None and not (streaming or incoming.stream):
            return _HangUp()
        return await handler(incoming)

    def _model_object(self, model_id: str) -> JSONDict:
        if self.models_format == "together":
            return {
                "id": model_id,
                "object": "model",
                "created": _CREATED,
                "type": "chat",
                "display_name": model_id.rsplit("/", 1)[-1],
                "organization": model_id.split("/", 1)[0],
                "context_length": 8192,
            }
        return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "mock-upstream"}

    async def list_models(self, request: Request) -> Response:
        await self._record(request)
        data = [self._model_object(m) for m in self.models]
        if self.models_format == "together":
            return JSONResponse(data)
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        recorded, _, _ = await self._record(request)
        model_id = request.path_params["model_id"]
        markers = parse_markers(model_id)
        if markers.fixed_failure is not None:
            authorization = recorded.headers.get("authorization", "")
            return _fixed_failure(markers.fixed_failure, model_id, authorization)
        return JSONResponse(self._model_object(model_id))

    async def not_found(self, request: Request) -> Response:
        await self._record(request)
        message = f"Unknown request URL: {request.method} {request.url.path}"
        return openai_error(404, message, "invalid_request_error", "unknown_url")

    def routes(self) -> list[Route]:
        posts: list[tuple[str, Handler, bool]] = [
            ("/v1/chat/completions", chat_completions, False),
            ("/v1/completions", completions, False),
            ("/v1/embeddings", embeddings, False),
            ("/v1/images/generations", image_generations, False),
            ("/v1/audio/speech", audio_speech, True),
            ("/v1/audio/transcriptions", audio_transcriptions, False),
            ("/v1/audio/translations", audio_transcriptions, False),
            ("/v1/moderations", moderations, False),
            ("/v1/rerank", rerank, False),
            ("/v1/videos/generations", video_generations, False),
        ]
        routes = [
            Route(path, self.endpoint(handler, streaming=streaming), methods=["POST"])
            for path, handler, streaming in posts
        ]
        routes += [
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
            Route("/{path:path}", self.not_found, methods=_ALL_METHODS),
        ]
        return routes


class _Outer:
    """Raw ASGI wrapper: exposes the connection's transport and adds ``x-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # uvicorn's receive is a bound method of its request cycle, which holds the transport.
        cycle = getattr(receive, "__self__", None)
        scope[_TRANSPORT_KEY] = getattr(cycle, "transport", None)
        request_id = f"req-mock-{uuid.uuid4().hex[:16]}"
        scope[_REQUEST_ID_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def _build_app(state: _State, models_format: str, models: Sequence[str]) -> ASGIApp:
    if models_format not in ("openai", "together"):
        raise ValueError(f"models_format must be 'openai' or 'together', not {models_format!r}")
    return _Outer(Starlette(routes=_MockApp(state, models_format, models).routes()))


# --------------------------------------------------------------------------- server control


class MockUpstream:
    """The mock upstream server, run by uvicorn in a daemon thread on 127.0.0.1."""

    def __init__(
        self,
        *,
        models_format: str = "openai",
        models: Sequence[str] = _DEFAULT_MODELS,
    ) -> None:
        self._state = _State()
        self._app = _build_app(self._state, models_format, models)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self._port: int | None = None

    @property
    def app(self) -> ASGIApp:
        """The ASGI application (also usable in-process, e.g. with ``httpx.ASGITransport``)."""
        return self._app

    def start(self) -> None:
        """Bind a free port, start uvicorn in a daemon thread and wait until it serves."""
        if self._server is not None:
            raise RuntimeError("MockUpstream is already running")
        # proto=IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted connections; without it
        # every keep-alive response waits ~40 ms (Nagle + delayed ACK).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(
            self._app,
            loop="asyncio",
            lifespan="off",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="mock-upstream"
        )
        self._server, self._thread, self._socket = server, thread, sock
        self._port = sock.getsockname()[1]
        thread.start()
        self._wait_started(server, thread)

    def _wait_started(self, server: uvicorn.Server, thread: threading.Thread) -> None:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("MockUpstream failed to start")
            time.sleep(0.005)

    def stop(self) -> None:
        """Stop the server and wait for its thread; safe to call twice."""
        server, thread, sock = self._server, self._thread, self._socket
        self._server = self._thread = self._socket = None
        if server is not None:
            server.should_exit = True
        if thread is not None:
            thread.join(timeout=10)
        if sock is not None:
            sock.close()

    def __enter__(self) -> MockUpstream:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("MockUpstream has not been started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the recorded requests, in arrival order."""
        return self._state.requests()

    def requests_for(self, model: str) -> list[RecordedRequest]:
        """The recorded requests whose model id is exactly ``model``."""
        return [r for r in self._state.requests() if r.model == model]

    def reset(self) -> None:
        """Forget the recorded requests and all per-model counters."""
        self._state.reset()

    def count(self, model: str) -> int:
        """How many POST requests arrived for the model id ``model`` (exact match)."""
        return self._state.count(model)


@contextlib.contextmanager
def running_mock_upstream(
    *,
    models_format: str = "openai",
    models: Sequence[str] = _DEFAULT_MODELS,
) -> Iterator[MockUpstream]:
    """``with running_mock_upstream() as upstream:`` — start, yield, stop."""
    upstream = MockUpstream(models_format=models_format, models=models)
    upstream.start()
    try:
        yield upstream
    finally:
        upstream.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Mock OpenAI-compatible upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--models-format", choices=("openai", "together"), default="openai")
    args = parser.parse_args(argv)
    app = _build_app(_State(), args.models_format, _DEFAULT_MODELS)
    uvicorn.run(app, host=args.host, port=args.port, loop="asyncio", lifespan="off")


if __name__ == "__main__":
    main()
