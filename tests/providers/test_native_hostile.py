"""A hostile upstream behind the native pass-through (``responses_api: true``, ``api:
anthropic``): usage out of range or missing, a wrong content type, an answer that is not JSON,
a cut stream. Each is a clean answer or a correctly shaped error, and a usage record."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import RunningGateway
from tests.hostile_upstream import HostileUpstream, head
from tests.providers.conftest import StartProviders


def _json(document: dict[str, Any], content_type: str = "application/json") -> Any:
    async def script() -> AsyncIterator[bytes]:
        body = json.dumps(document).encode()  # orjson refuses integers past 64 bits
        yield head(content_type=content_type, content_length=len(body)) + body

    return script


def _raw(body: bytes, content_type: str) -> Any:
    async def script() -> AsyncIterator[bytes]:
        yield head(content_type=content_type, content_length=len(body)) + body

    return script


def _events(*events: dict[str, Any], end: bool = True) -> Any:
    async def script() -> AsyncIterator[bytes]:
        yield head(content_type="text/event-stream", transfer_encoding="chunked")
        for event in events:
            data = b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event)
            data += b"\n\n"
            yield f"{len(data):x}\r\n".encode() + data + b"\r\n"
        if end:
            yield b"0\r\n\r\n"

    return script


def _response(usage: Any) -> dict[str, Any]:
    output = [{"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
               "content": [{"type": "output_text", "text": "hi", "annotations": []}]}]  # fmt: skip
    return {"id": "resp_h", "object": "response", "status": "completed", "model": "m",
            "output": output, "usage": usage}  # fmt: skip


def _message(usage: Any) -> dict[str, Any]:
    return {"id": "msg_h", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": usage}  # fmt: skip


def _stalled(*events: dict[str, Any]) -> Any:
    """The events, then nothing for longer than the upstream's idle timeout (2 s)."""
    sent = _events(*events, end=False)

    async def script() -> AsyncIterator[bytes]:
        async for piece in sent():
            yield piece
        await asyncio.sleep(5)

    return script


SCRIPTS = {
    "r-negative": _json(_response({"input_tokens": -50, "output_tokens": 10**30})),
    "r-strings": _json(_response({"input_tokens": "9" * 40, "output_tokens": [1]})),
    "r-none": _json(_response(None)),
    "r-html": _raw(b"<html><body>Bad gateway</body></html>", "text/html"),
    "r-list": _raw(b"[1, 2]", "application/json"),
    "m-html": _raw(b"<html><body>Bad gateway</body></html>", "text/html"),
    "r-stream-json": _json(_response({"input_tokens": 1, "output_tokens": 1})),
    "r-cut": _events({"type": "response.created", "response": {"id": "r"}}, end=False),
    "r-stalled": _stalled({"type": "response.created", "response": {"id": "r"}}),
    "m-negative": _json(_message({"input_tokens": -7, "output_tokens": 2**70})),
    "m-stream-huge": _events(
        {"type": "message_start", "message": {**_message({"input_tokens": -3}), "content": []}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 10**15},
        },
        {"type": "message_stop"},
    ),
}


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream(SCRIPTS).running() as server:
        yield server


def _gateway(
    start_providers: StartProviders, hostile: HostileUpstream, model: str
) -> RunningGateway:
    upstreams = {
        "native": {"base_url": hostile.base_url, "api_key_env": "NATIVE_KEY",
                   "responses_api": True, "first_byte_timeout_s": 2, "idle_timeout_s": 2},
        "nclaude": {"api": "anthropic", "base_url": hostile.base_url,
                    "api_key_env": "NATIVE_KEY", "first_byte_timeout_s": 2, "idle_timeout_s": 2},
    }  # fmt: skip
    models = {
        name: {"upstream": "native" if name.startswith("r-") else "nclaude", "model": name,
               "modality": "text"}
        for name in SCRIPTS
    }  # fmt: skip
    return start_providers(
        {"text": [model]},
        extra_upstreams=upstreams,
        extra_models=models,
        env={"NATIVE_KEY": "sk-n-0123456789"},
    )


def _post(gw: RunningGateway, path: str, body: dict[str, Any]) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.key()}", "anthropic-version": "2023-06-01"}
    return httpx.post(f"{gw.base_url}{path}", headers=headers, json=body, timeout=10)


def _records(gw: RunningGateway, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        answer = httpx.get(f"{gw.base_url}/usage", headers={"authorization": f"Bearer {gw.key()}"})
        found: list[dict[str, Any]] = answer.json()["data"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


Start = Callable[[str], RunningGateway]


@pytest.fixture
def start(start_providers: StartProviders, hostile: HostileUpstream) -> Start:
    return lambda model: _gateway(start_providers, hostile, model)


def _responses(gw: RunningGateway, model: str, **extra: Any) -> httpx.Response:
    return _post(gw, "/responses", {"model": model, "input": "Hi", "max_output_tokens": 20,
                                    **extra})  # fmt: skip


def _messages(gw: RunningGateway, model: str, **extra: Any) -> httpx.Response:
    body = {"model": model, "max_tokens": 20, "messages": [{"role": "user", "content": "Hi"}]}
    return _post(gw, "/messages", {**body, **extra})


@pytest.mark.parametrize("model", ["r-negative", "r-strings", "m-negative"])
def test_usage_out_of_range_is_clamped(start: Start, model: str) -> None:
    gw = start(model)
    send = _responses if model.startswith("r-") else _messages
    answer = send(gw, model)
    assert answer.status_code == 200, answer.text
    record = _records(gw, 1)[0]
    assert 0 <= record["prompt_tokens"] < 1000
    assert 0 <= record["completion_tokens"] <= 20


def test_a_stream_with_huge_usage_is_clamped(start: Start) -> None:
    gw = start("m-stream-huge")
    answer = _messages(gw, "m-stream-huge", stream=True)
    assert answer.status_code == 200 and b"message_stop" in answer.content
    record = _records(gw, 1)[0]
    assert record["status"] == 200 and record["completion_tokens"] <= 20


def test_no_usage_is_estimated(start: Start) -> None:
    gw = start("r-none")
    answer = _responses(gw, "r-none")
    assert answer.status_code == 200
    record = _records(gw, 1)[0]
    assert record["estimated"] is True and record["prompt_tokens"] > 0


@pytest.mark.parametrize("model", ["r-html", "r-list", "m-html"])
def test_an_answer_that_is_not_a_json_object_is_a_shaped_502(start: Start, model: str) -> None:
    gw = start(model)
    answer = (_responses if model.startswith("r-") else _messages)(gw, model)
    assert answer.status_code == 502, answer.text
    error = answer.json()["error"]
    if model.startswith("m-"):  # Anthropic's shape on /v1/messages
        assert answer.json()["type"] == "error" and error["type"] == "api_error"
    else:
        assert error["code"] == "upstream_error"
    assert _records(gw, 1)[0]["status"] == 502


def test_a_stream_answered_with_json_is_a_shaped_error(start: Start) -> None:
    gw = start("r-stream-json")
    answer = _responses(gw, "r-stream-json", stream=True)
    assert answer.status_code == 502, answer.text
    assert "error" in answer.json()


def test_a_cut_stream_ends_with_an_error_event(start: Start) -> None:
    gw = start("r-cut")
    with httpx.stream(
        "POST", f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "r-cut", "input": "Hi", "stream": True},
    ) as answer:  # fmt: skip
        body = answer.read()
    assert body.rstrip().split(b"\n\n")[-1].startswith(b"event: error")
    assert _records(gw, 1)[0]["status"] == 502


def test_a_stalled_stream_ends_at_the_idle_timeout_with_an_error_event(start: Start) -> None:
    gw = start("r-stalled")
    with httpx.stream(
        "POST", f"{gw.base_url}/responses",
        headers={"authorization": f"Bearer {gw.key()}"},
        json={"model": "r-stalled", "input": "Hi", "stream": True},
    ) as answer:  # fmt: skip
        body = answer.read()
    events = body.rstrip().split(b"\n\n")
    assert events[0].startswith(b"event: response.created")
    assert events[-1].startswith(b"event: error") and b"idle timeout" in events[-1]
    assert _records(gw, 1)[0]["status"] == 504  # the upstream timed out


def test_the_dropped_fields_header_names_only_the_gateways_own_paths(
    start_providers: StartProviders,
) -> None:
    """The header is built from the bridge's field paths (names from its tables, indices),
    never from a client's text: no CR/LF, no client-chosen name, bounded in length."""
    gw = start_providers({"text": ["ok"]}, tier={"unsupported_fields": "drop"})
    evil = "x\r\nset-cookie: a=b"
    tools = [{"type": evil}] * 100 + [{"type": "web_search", evil: evil}]
    answer = _post(gw, "/responses", {"model": "ok", "input": "Hi", "tools": tools})
    assert answer.status_code in (200, 400), answer.text
    assert "set-cookie" not in {k.lower() for k in answer.headers}
    dropped = answer.headers.get("x-gateway-dropped-fields", "")
    assert "\r" not in dropped and "\n" not in dropped and evil not in dropped
    assert len(dropped) < 4096
    for unknown in ({evil: 1}, {"reasoning": {evil: 1}}, {"text": {evil: 1}}):
        answer = _post(gw, "/responses", {"model": "ok", "input": "Hi", **unknown})
        assert answer.status_code == 400, answer.text
        assert "x-gateway-dropped-fields" not in answer.headers
        assert answer.json()["error"]["type"] == "invalid_request_error"
