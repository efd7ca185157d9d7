"""Tests for the mock upstream used by the gateway's integration tests."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

try:
    from tests.mock_upstream import MockUpstream, parse_markers
except ImportError:  # tests/ itself is on sys.path (no tests/__init__.py)
    from mock_upstream import MockUpstream, parse_markers  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def upstream() -> Iterator[MockUpstream]:
    with MockUpstream() as server:
        yield server


@pytest.fixture
def client(upstream: MockUpstream) -> Iterator[httpx.Client]:
    upstream.reset()
    with httpx.Client(base_url=upstream.base_url, timeout=5) as http:
        yield http


def _chat(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello there world"}], **extra}


def _events(text: str) -> list[str]:
    """The data payloads of an SSE body (any line ending)."""
    lines = text.replace("\r\n", "\n").split("\n")
    return [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]


def _chunks(text: str) -> list[dict[str, Any]]:
    events = _events(text)
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


# --------------------------------------------------------------------------- markers


def test_parse_markers() -> None:
    markers = parse_markers("x/y/flaky-2+slow-20+words-3+slowfirst-0.5+bogus+crlf")
    assert (markers.flaky, markers.slow_ms, markers.words) == (2, 20.0, 3)
    assert markers.slowfirst == 0.5 and markers.crlf and markers.drop is None
    assert parse_markers("meta-llama/Llama-3-8b") == parse_markers(None)
    assert parse_markers("a/fail-503+notfound").fixed_failure == "fail-503"


# --------------------------------------------------------------------------- chat


def test_json_chat(upstream: MockUpstream, client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions", json=_chat("org/model-a"), headers={"Authorization": "Bearer sk-test"}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["object"] == "chat.completion" and body["model"] == "org/model-a"
    choice = body["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello from org/model-a w4 w5"}
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9}
    [recorded] = upstream.requests
    assert (recorded.method, recorded.path) == ("POST", "/v1/chat/completions")
    assert recorded.headers["authorization"] == "Bearer sk-test"
    assert recorded.json is not None and recorded.json["model"] == "org/model-a"
    assert recorded.form is None and recorded.file_sizes == {}
    assert upstream.count("org/model-a") == 1


def test_words_and_max_tokens(client: httpx.Client) -> None:
    body = client.post("/chat/completions", json=_chat("m/words-8")).json()
    assert len(body["choices"][0]["message"]["content"].split()) == 8
    body = client.post("/chat/completions", json=_chat("m/words-8", max_tokens=2)).json()
    assert body["choices"][0]["message"]["content"] == "Hello from"
    assert body["usage"]["completion_tokens"] == 2
    assert body["choices"][0]["finish_reason"] == "stop"  # without the length marker


def test_length_marker(client: httpx.Client) -> None:
    cut = client.post("/chat/completions", json=_chat("m/length", max_tokens=2)).json()
    assert cut["choices"][0]["finish_reason"] == "length"
    whole = client.post("/chat/completions", json=_chat("m/length", max_tokens=9)).json()
    assert whole["choices"][0]["finish_reason"] == "stop"
    streamed = client.post("/chat/completions", json=_chat("m/length", max_tokens=2, stream=True))
    assert '"finish_reason":"length"' in streamed.text


def test_list_content_prompt_tokens(client: httpx.Client) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one two three"},
                {"type": "image_url", "image_url": {"url": "x"}},
            ],
        },
    ]
    body = client.post("/chat/completions", json={"model": "m", "messages": messages}).json()
    assert body["usage"]["prompt_tokens"] == 2 + 1 + 3 + 1


def test_stream_without_include_usage(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=_chat("m/words-3", stream=True))
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = _chunks(response.text)
    assert "\r" not in response.text
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    contents = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
    assert contents == ["Hello ", "from ", "m/words-3"]
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all("usage" not in c for c in chunks)


def test_stream_with_include_usage(client: httpx.Client) -> None:
    payload = _chat("m/words-2", stream=True, stream_options={"include_usage": True})
    chunks = _chunks(client.post("/chat/completions", json=payload).text)
    *others, usage_chunk = chunks
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert all(c["usage"] is None for c in others)
    assert others[-1]["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("include_usage", [False, True])
def test_usage_on_finish(client: httpx.Client, include_usage: bool) -> None:
    payload = _chat(
        "m/usage-on-finish+words-2", stream=True, stream_options={"include_usage": include_usage}
    )
    chunks = _chunks(client.post("/chat/completions", json=payload).text)
    finish = chunks[-1]
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert finish["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    assert all(c["choices"] for c in chunks)  # no usage-only chunk
    assert all(c["usage"] is None for c in chunks[:-1])


def test_nousage(client: httpx.Client) -> None:
    body = client.post("/chat/completions", json=_chat("m/nousage")).json()
    assert "usage" not in body
    payload = _chat("m/nousage", stream=True, stream_options={"include_usage": True})
    chunks = _chunks(client.post("/chat/completions", json=payload).text)
    assert all(c["choices"] for c in chunks)
    assert all(c.get("usage") is None for c in chunks)


def test_crlf(client: httpx.Client) -> None:
    text = client.post("/chat/completions", json=_chat("m/crlf", stream=True)).text
    assert text.endswith("data: [DONE]\r\n\r\n")
    assert text.count("\n") == text.count("\r\n") == 2 * len(_events(text))


def test_drop_stream(upstream: MockUpstream, client: httpx.Client) -> None:
    received: list[bytes] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/chat/completions", json=_chat("m/drop-2", stream=True)) as r,
    ):
        assert r.status_code == 200
        received.extend(r.iter_bytes())
    events = _events(b"".join(received).decode())
    assert "[DONE]" not in events
    contents = [json.loads(e)["choices"][0]["delta"].get("content") for e in events]
    assert contents == ["", "Hello ", "from "]
    assert upstream.count("m/drop-2") == 1


def test_drop_non_stream(upstream: MockUpstream, client: httpx.Client) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/chat/completions", json=_chat("m/drop-0"))
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/embeddings", json={"model": "m/drop-0", "input": "x"})
    assert upstream.count("m/drop-0") == 2
    assert client.post("/chat/completions", json=_chat("m")).status_code == 200


def test_slow_and_slowfirst(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post("/chat/completions", json=_chat("m/slowfirst-0.2"))
    assert response.status_code == 200 and time.monotonic() - started >= 0.2
    started = time.monotonic()
    response = client.post("/chat/completions", json=_chat("m/slow-30+words-3", stream=True))
    assert len(_chunks(response.text)) == 5 and time.monotonic() - started >= 0.12


# --------------------------------------------------------------------------- failures


def test_flaky_counter_and_reset(upstream: MockUpstream, client: httpx.Client) -> None:
    statuses = [
        client.post("/chat/completions", json=_chat("x/y/flaky-2")).status_code for _ in range(3)
    ]
    assert statuses == [503, 503, 200]
    assert upstream.count("x/y/flaky-2") == 3 and len(upstream.requests) == 3
    upstream.reset()
    assert upstream.count("x/y/flaky-2") == 0 and upstream.requests == []
    assert client.post("/chat/completions", json=_chat("x/y/flaky-2")).status_code == 503


def test_fail_429_headers(client: httpx.Client) -> None:
    response = client.post("/chat/completions", json=_chat("m/fail-429"))
    assert response.status_code == 429 and response.headers["retry-after"] == "1"
    body = response.json()
    assert body["id"] and body["error"]["type"] == "dynamic_request_limited"
    assert body["error"]["param"] is None and body["error"]["code"] is None


def test_ratelimited_n(client: httpx.Client) -> None:
    first = client.post("/embeddings", json={"model": "m/ratelimited-1", "input": "x"})
    assert first.status_code == 429
    assert first.headers["retry-after-ms"] == "50" and first.headers["retry-after"] == "1"
    second = client.post("/embeddings", json={"model": "m/ratelimited-1", "input": "x"})
    assert second.status_code == 200


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("m/fail-500", 500, None),
        ("m/fail-502", 502, None),
        ("m/fail-503", 503, None),
        ("m/notfound", 404, "model_not_found"),
        ("m/unavailable", 400, "model_not_available"),
        ("m/auth-401", 401, "invalid_api_key"),
    ],
)
def test_error_shapes(client: httpx.Client, model: str, status: int, code: str | None) -> None:
    response = client.post(
        "/chat/completions", json=_chat(model), headers={"Authorization": "Bearer sk-leaky"}
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    if model.endswith("auth-401"):
        assert "sk-leaky" in error["message"]


def test_flat_and_plain_errors(client: httpx.Client) -> None:
    flat = client.post("/completions", json={"model": "m/bad-400", "prompt": "x"})
    assert flat.status_code == 400
    assert flat.json()["object"] == "error" and flat.json()["code"] == 400
    plain = client.post("/completions", json={"model": "m/plain-502", "prompt": "x"})
    assert plain.status_code == 502 and plain.text == "upstream proxy error"
    assert plain.headers["content-type"].startswith("text/plain")


def test_invalid_json(upstream: MockUpstream, client: httpx.Client) -> None:
    response = client.post(
        "/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests[0].json is None


# --------------------------------------------------------------------------- other endpoints


def test_completions(client: httpx.Client) -> None:
    body = client.post("/completions", json={"model": "m/words-2", "prompt": "a b c"}).json()
    assert body["object"] == "text_completion" and body["choices"][0]["text"] == "Hello from"
    assert body["usage"]["prompt_tokens"] == 4
    payload = {
        "model": "m/words-2",
        "prompt": ["a", "b"],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = _chunks(client.post("/completions", json=payload).text)
    assert [c["choices"][0]["text"] for c in chunks[:-1]] == ["Hello ", "from", ""]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 4
    assert all(c["object"] == "text_completion" for c in chunks)


def test_embeddings_base64(client: httpx.Client) -> None:
    payload = {"model": "bge", "input": ["one", "two words"], "encoding_format": "base64"}
    body = client.post("/embeddings", json=payload).json()
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    vectors = [struct.unpack("<8f", base64.b64decode(d["embedding"])) for d in body["data"]]
    floats = client.post("/embeddings", json={"model": "bge", "input": ["one", "two words"]})
    assert [list(v) for v in vectors] == [d["embedding"] for d in floats.json()["data"]]
    assert [d["index"] for d in body["data"]] == [0, 1]


def test_multipart_upload(upstream: MockUpstream, client: httpx.Client) -> None:
    audio = b"\x00" * (3 * 1024 * 1024)
    response = client.post(
        "/audio/transcriptions",
        data={"model": "whisper/flaky-0", "language": "en"},
        files={"file": ("speech.mp3", audio, "audio/mpeg")},
    )
    assert response.status_code == 200
    assert response.json() == {"text": f"transcribed {len(audio)} bytes"}
    [recorded] = upstream.requests
    assert recorded.form == {"model": "whisper/flaky-0", "language": "en"}
    assert recorded.file_sizes == {"file": len(audio)} and recorded.json is None
    assert upstream.count("whisper/flaky-0") == 1
    text = client.post(
        "/audio/translations",
        data={"model": "w", "response_format": "text"},
        files={"file": ("a.wav", b"1234")},
    )
    assert text.text == "transcribed 4 bytes"
    assert text.headers["content-type"].startswith("text/plain")
    failing = client.post(
        "/audio/transcriptions", data={"model": "w/fail-503"}, files={"file": ("a.wav", b"1234")}
    )
    assert failing.status_code == 503


def test_speech_chunks(client: httpx.Client) -> None:
    started = time.monotonic()
    with client.stream("POST", "/audio/speech", json={"model": "tts", "input": "hi"}) as r:
        assert r.headers["content-type"] == "audio/mpeg"
        audio = b"".join(r.iter_bytes())
    assert len(audio) == 4096 and audio.startswith(b"ID3")
    assert time.monotonic() - started >= 0.03


def test_misc_endpoints(client: httpx.Client) -> None:
    images = client.post(
        "/images/generations", json={"model": "img", "prompt": "cat", "n": 2}
    ).json()
    assert images["data"] == [{"url": "http://127.0.0.1/img.png"}] * 2
    b64 = client.post(
        "/images/generations", json={"model": "img", "prompt": "cat", "response_format": "base64"}
    )
    assert base64.b64decode(b64.json()["data"][0]["b64_json"]).startswith(b"\x89PNG")
    moderation = client.post("/moderations", json={"input": "hi"}).json()
    assert moderation["results"][0]["flagged"] is False
    rerank = client.post(
        "/rerank",
        json={
            "model": "rr",
            "query": "red apple",
            "documents": ["a banana", "red apple pie"],
            "top_n": 1,
        },
    ).json()
    assert rerank["object"] == "rerank" and rerank["results"][0]["index"] == 1
    video = client.post("/videos/generations", json={"model": "v", "prompt": "x"}).json()
    assert video == {"id": "video-1", "model": "v", "status": "queued"}
    assert client.post("/videos/generations", json={"model": "v/fail-500"}).status_code == 500
    assert client.get("/unknown").status_code == 404


def test_models_openai_format(client: httpx.Client) -> None:
    body = client.get("/models").json()
    assert body["object"] == "list"
    assert all(m["owned_by"] and m["object"] == "model" for m in body["data"])
    assert client.get("/models/meta-llama/Llama-3-8b").json()["id"] == "meta-llama/Llama-3-8b"


def test_models_together_format() -> None:
    with (
        MockUpstream(models_format="together") as together,
        httpx.Client(base_url=together.base_url) as http,
    ):
        body = http.get("/models").json()
        assert isinstance(body, list) and body
        assert all("owned_by" not in m and m["id"] for m in body)
        assert together.requests[0].path == "/v1/models"
