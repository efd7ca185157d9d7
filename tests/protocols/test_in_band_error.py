"""An OpenAI-compatible upstream's in-band error after the first bytes ends a Responses stream
with ``response.failed`` and a Messages stream with an ``error`` event, each in its API's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import RunningGateway, StartGateway
from tests.hostile_upstream import HostileUpstream, head
from tests.mock_upstream import MockUpstream
from tests.support import DEFAULT_ROUTES, routes_doc

ERROR = {"message": "The model is overloaded.", "type": "server_error", "code": "overloaded"}


async def _text_then_error() -> AsyncIterator[bytes]:
    yield head(content_type="text/event-stream", connection="close")
    delta = {"role": "assistant", "content": "Hel"}
    chunk = {"id": "c1", "object": "chat.completion.chunk", "model": "inband"}
    chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": None}]
    yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    yield b"data: " + orjson.dumps({"error": ERROR}) + b"\n\n"


@pytest.fixture
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream({"inband": _text_then_error}).running() as upstream:
        yield upstream


@pytest.fixture
def gateway(
    start_gateway: StartGateway, upstream: MockUpstream, hostile: HostileUpstream
) -> RunningGateway:
    routes = routes_doc(upstream.base_url)
    mock = routes["upstreams"]["mock"]
    upstreams = {**routes["upstreams"], "hostile": {**mock, "base_url": hostile.base_url}}
    model = {**routes["models"]["ok"], "upstream": "hostile", "model": "inband"}
    tier = {"routes": {**DEFAULT_ROUTES, "text": ["ok", "inband"]}}
    extra = {"upstreams": upstreams, "models": {**routes["models"], "inband": model}}
    return start_gateway({"free": tier}, routes_extra=extra)


def test_responses_stream_fails_in_band(gateway: RunningGateway) -> None:
    sdk = openai.OpenAI(base_url=gateway.base_url, api_key=gateway.key(), max_retries=0)
    with sdk.responses.stream(model="inband", input="Hi") as stream:
        events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas == ["Hel"]
    last = events[-1]
    assert last.type == "response.failed" and last.response.status == "failed"
    assert last.response.error is not None
    assert last.response.error.message == ERROR["message"]
    assert "response.completed" not in [e.type for e in events]


def test_messages_stream_ends_with_an_error_event(gateway: RunningGateway) -> None:
    raw = httpx.post(
        f"{gateway.base_url}/messages",
        headers={"x-api-key": gateway.key(), "anthropic-version": "2023-06-01"},
        json={
            "model": "inband",
            "max_tokens": 20,
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    assert raw.status_code == 200
    events = [block for block in raw.text.split("\n\n") if block.strip()]
    assert events[-1].startswith("event: error\n")
    document = orjson.loads(events[-1].split("data: ", 1)[1])
    assert (
        document["type"] == "error" and document["error"]["type"] == "overloaded_error"
    )  # its code: overloaded
    assert document["error"]["message"] == ERROR["message"]
    assert "message_stop" not in raw.text
    sdk = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.key(), max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError),
        sdk.messages.stream(
            model="inband", max_tokens=20, messages=[{"role": "user", "content": "Hi"}]
        ) as stream,
    ):
        list(stream)
