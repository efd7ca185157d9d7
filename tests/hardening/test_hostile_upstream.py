"""Issue 10 #8, #9: no upstream can make the gateway buffer without bound, decode what it did
not ask for, or answer 500; each case is a clean 502 (or an in-band error once streaming)."""

from __future__ import annotations

import asyncio
import functools
import gzip

import httpx
import orjson
import pytest

from gateway.app import create_app
from gateway.observe.metrics import Metrics
from tests.hostile_upstream import HostileUpstream, head
from tests.support import ThreadedServer, build_config

MB = 1024 * 1024
KEY = "sk-test-hostile-0123456789"


async def huge_json():
    yield head(content_type="application/json", content_length=200 * MB)
    for _ in range(200 * 16):
        yield b" " * (64 * 1024)


@functools.cache
def gzip_bomb_body() -> bytes:
    """Made once, before the request: compressing it in the answer took past the first-byte
    timeout on a loaded host (a 504 instead of the refusal)."""
    return gzip.compress(b"0" * (50 * MB))


async def gzip_bomb():
    body = gzip_bomb_body()
    yield head(content_type="application/json", content_encoding="gzip", content_length=len(body))
    yield body


async def html_to_a_stream():
    yield head(content_type="text/html", content_length=5) + b"<b>hi"


async def json_to_a_stream():
    yield head(content_type="application/json", content_length=2) + b"{}"


async def json_cut_short():
    yield head(content_type="application/json", content_length=1000) + b'{"data": ['


async def json_stalled():
    yield head(content_type="application/json", content_length=1000) + b'{"data": ['
    await asyncio.sleep(5)


async def endless_event():
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    yield b"6\r\ndata: \r\n"
    for _ in range(10_000):
        yield b"1000\r\n" + b"x" * 4096 + b"\r\n"


async def many_headers():
    fields = "".join(f"x-h{i}: {i}\r\n" for i in range(200))
    yield b"HTTP/1.1 200 OK\r\n" + fields.encode() + b"content-length: 2\r\n\r\n{}"


SCRIPTS = {
    "headers": many_headers,
    "huge-json": huge_json,
    "gzip": gzip_bomb,
    "html": html_to_a_stream,
    "json": json_to_a_stream,
    "cut": json_cut_short,
    "stalled": json_stalled,
    "endless": endless_event,
}


@pytest.fixture
def hostile():
    with HostileUpstream(SCRIPTS).running() as server:
        yield server


@pytest.fixture
def gw(hostile):
    upstream = {"base_url": hostile.base_url, "first_byte_timeout_s": 3, "idle_timeout_s": 1}
    routes = {
        "upstreams": {"evil": upstream},
        "models": {
            name: {
                "upstream": "evil",
                "model": name,
                "modality": "tts" if name in ("cut", "stalled") else "text",
            }
            for name in SCRIPTS
        },
        "retry": {"attempts": 1},
    }
    tiers = {  # one tier per model, so that no failure falls back to another model
        "tiers": {name: {"routes": {"text": [name], "tts": [name]}} for name in SCRIPTS},
        "settings": {
            "max_upstream_body_mb": 1,
            "max_sse_event_kb": 64,
            "max_upstream_headers": 50,
        },
    }
    keys = ",".join(f"{KEY}-{name}={name}:u1" for name in SCRIPTS)
    config = build_config(routes, tiers, {"GATEWAY_KEYS": keys})
    server = ThreadedServer(create_app(config, metrics=Metrics())).start()
    yield server.url + "/v1"
    server.stop()


def post(gw: str, path: str, body: dict) -> httpx.Response:
    headers = {"authorization": f"Bearer {KEY}-{body['model']}"}
    return httpx.post(gw + path, json=body, headers=headers, timeout=20)


def chat(model: str, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def assert_502(response: httpx.Response, words: str) -> None:
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert words in error["message"] and error["type"] == "api_error"


def test_an_answer_past_the_size_limit_is_refused_not_buffered(gw, hostile):
    assert_502(post(gw, "/chat/completions", chat("huge-json")), "byte limit")
    assert hostile.bytes_sent["huge-json"] < 40 * MB  # it stopped reading


def test_an_encoding_nobody_asked_for_is_refused_not_decoded(gw):
    gzip_bomb_body()
    assert_502(post(gw, "/chat/completions", chat("gzip")), "content-encoding 'gzip'")


@pytest.mark.parametrize("model", ["html", "json"])
def test_a_stream_answered_without_an_event_stream_is_a_502(gw, model):
    assert_502(post(gw, "/chat/completions", chat(model, stream=True)), "instead of an event")


@pytest.mark.parametrize("model", ["cut", "stalled"])
def test_a_relayed_json_answer_cut_short_or_stalled_is_a_502(gw, model):
    response = post(gw, "/audio/speech", {"model": model, "input": "hi", "voice": "x"})
    assert_502(response, "cut short or stalled")


def test_an_event_that_never_ends_becomes_an_in_band_error(gw, hostile):
    response = post(gw, "/chat/completions", chat("endless", stream=True))
    assert response.status_code == 200
    events = [e for e in response.content.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    error = orjson.loads(events[-2].removeprefix(b"data: "))["error"]
    assert "byte limit" in error["message"]
    assert hostile.bytes_sent["endless"] < 40 * MB


def test_the_configured_header_cap_reaches_the_upstream_client(gw):
    assert_502(post(gw, "/chat/completions", chat("headers")), "more than 50 header fields")
