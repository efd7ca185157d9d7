"""A JsonPost (build_request's upstream POST) goes on the wire as the httpx.Request it stands for.

Both are sent by the native transport to a raw local server that records the bytes it reads:
the JsonPost's head made from its parts must be the head the general way makes, before and
after its headers are read, changed, or hold a value that must be refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from gateway.config.model import Model, Upstream
from gateway.providers.openai import build_request
from gateway.secret import Secret
from gateway.wire import NativeTransport
from gateway.wire.request import JsonPost

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
BODY = b'{"model":"m","messages":[]}'
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


async def sent_bytes(make: Callable[[str], list[httpx.Request]]) -> list[bytes]:
    """What a server read of each request ``make(base_url)`` gives, sent one after another."""
    received: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await reader.readuntil(b"\r\n\r\n"):
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            received.append(head + await reader.readexactly(length))
            writer.write(OK)
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = NativeTransport()
    try:
        for request in make(f"http://127.0.0.1:{port}/v1"):
            response = await transport.handle_async_request(request)
            await response.aread()
            await response.aclose()
    finally:
        await transport.aclose()
        server.close()
    return received


def json_post(
    base_url: str, api_key: str | None, accept: str | None, request_id: str = "req-1"
) -> httpx.Request:
    upstream = Upstream("u", base_url, None if api_key is None else Secret(api_key))
    model = Model("m", upstream, "m", "chat")
    key = upstream.api_key
    return build_request(
        model, "/chat/completions", json_body=BODY, api_key=key, request_id=request_id,
        accept=accept,
    )  # fmt: skip


def general(request: httpx.Request) -> httpx.Request:
    """The same request as httpx builds it, which the transport writes the general way."""
    fields: list[tuple[bytes, bytes]] = list(request.headers.raw)
    extensions: dict[str, Any] = dict(request.extensions)
    return httpx.Request("POST", request.url, headers=fields, content=BODY, extensions=extensions)


@pytest.mark.parametrize("api_key", [None, "sk-upstream-0123456789"])
@pytest.mark.parametrize("accept", [None, "text/event-stream"])
def test_a_json_post_is_sent_as_the_request_it_stands_for(
    api_key: str | None, accept: str | None
) -> None:
    def make(base_url: str) -> list[httpx.Request]:
        fresh, read = json_post(base_url, api_key, accept), json_post(base_url, api_key, accept)
        assert type(fresh) is JsonPost and fresh.prepared() is not None  # its own way
        assert read.headers["content-length"] == str(len(BODY))  # read, not changed
        assert read.prepared() is not None
        return [fresh, general(json_post(base_url, api_key, accept)), read]

    sent = asyncio.run(sent_bytes(make))
    assert sent[0] == sent[1] == sent[2]
    line = b"POST /v1/chat/completions HTTP/1.1\r\naccept-encoding: identity\r\n"
    assert sent[0].startswith(line) and sent[0].endswith(b"\r\n\r\n" + BODY)
    assert (b"authorization: Bearer sk-upstream-" in sent[0]) == (api_key is not None)
    assert (b"accept: text/event-stream\r\n" in sent[0]) == (accept is not None)


def test_a_changed_json_post_is_sent_with_its_change() -> None:
    def make(base_url: str) -> list[httpx.Request]:
        changed = json_post(base_url, "sk-upstream-0123456789", None)
        changed.headers["traceparent"] = TRACEPARENT
        assert changed.prepared() is None  # the general way
        return [changed, general(changed)]

    sent = asyncio.run(sent_bytes(make))
    assert sent[0] == sent[1]
    assert b"\r\ntraceparent: " + TRACEPARENT.encode() + b"\r\n" in sent[0]


def test_a_value_that_could_write_fields_is_refused_before_sending() -> None:
    def make(base_url: str) -> list[httpx.Request]:
        return [json_post(base_url, None, None, request_id="req-1\r\nx-injected: 1")]

    with pytest.raises(httpx.LocalProtocolError, match="x-request-id"):
        asyncio.run(sent_bytes(make))
