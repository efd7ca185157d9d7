"""The gateway's server protocol reads requests as uvicorn's own does.

``serve_guard`` builds each request's scope and cycle itself and reads uvicorn's proxy headers
without the middleware: the same raw requests sent to it and to uvicorn's httptools protocol
must give the app the same scope, the same body, and the client the same bytes.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.types import Receive, Scope, Send

from gateway.errors import PayloadTooLarge
from gateway.http.body_limit import BodyLimit
from gateway.http.indexed_headers import ProxiedRequest
from tests.support import ThreadedServer


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with what it saw: the scope (ports aside) and the body, read to its end."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    seen = {key: value for key, value in scope.items() if key != "state"}  # the guard's own
    seen["keys"] = list(scope)
    seen["server"] = scope["server"][0]
    seen["client"] = [
        scope["client"][0],
        scope["client"][1] if scope["client"][0] != "127.0.0.1" else 0,
    ]
    seen["headers"] = [
        [name.decode("latin-1"), value.decode("latin-1")] for name, value in scope["headers"]
    ]
    for key in ("raw_path", "query_string"):
        seen[key] = scope[key].decode("latin-1")
    seen["body"] = body.decode("latin-1")
    answer = orjson.dumps(seen, option=orjson.OPT_SORT_KEYS)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    ours = ThreadedServer(echo, gateway=True).start()
    uvicorns = ThreadedServer(echo).start()
    yield ours, uvicorns
    ours.stop()
    uvicorns.stop()


DATE = re.compile(rb"date: [^\r]*\r\n")


def exchange(port: int, raw: bytes, answers: int = 1, marker: bytes = b'"body"') -> bytes:
    """``raw`` sent on a new connection; what came back once ``answers`` answers holding
    ``marker`` did or the connection closed, the date header dropped."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        sock.settimeout(10)
        received = b""
        while received.count(marker) < answers and (chunk := sock.recv(1 << 20)):
            received += chunk
        return DATE.sub(b"", received)


def request(
    method: str, target: str, *fields: str, body: bytes = b"", version: str = "1.1"
) -> bytes:
    lines = [f"{method} {target} HTTP/{version}", "host: x", *fields, "", ""]
    return "\r\n".join(lines).encode() + body


REQUESTS = {
    "get": request("GET", "/v1/models"),
    "query": request("GET", "/v1/models?limit=2&x=%20y#frag"),
    "quoted path": request("GET", "/v1/./chat/%2e%2e/completions%20x"),
    "absolute form": request("GET", "http://example.com/v1/models?a=1"),
    "post": request(
        "POST",
        "/v1/chat/completions",
        "content-type: application/json",
        "content-length: 7",
        body=b'{"a":1}',
    ),
    "chunked": request(
        "POST",
        "/v1/chat/completions",
        "transfer-encoding: chunked",
        body=b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n",
    ),
    "expect": request(
        "POST", "/v1/files", "Expect: 100-Continue  ", "content-length: 3", body=b"abc"
    ),
    "http/1.0": request("GET", "/v1/models", version="1.0"),
    "http/1.0 keep-alive": request("GET", "/v1/models", "connection: keep-alive", version="1.0"),
    "close": request("GET", "/v1/models", "Connection: close"),
    "forwarded": request(
        "GET",
        "/v1/models",
        "X-Forwarded-For: 203.0.113.7, 10.0.0.1",
        "x-forwarded-for: 127.0.0.1",
        "X-Forwarded-Proto: https ",
    ),
    "forwarded, odd scheme": request("GET", "/", "x-forwarded-proto: gopher"),
    "forwarded, empty": request("GET", "/", "x-forwarded-for: "),
    "repeated and spaced": request("GET", "/", "X-A: 1 \t", "x-a: 2", "X-Empty:", "accept:  */*"),
    "upgrade not served": request("GET", "/", "Connection: Upgrade", "Upgrade: h2c"),
    "head": request("HEAD", "/v1/models", "connection: close"),
}


@pytest.mark.parametrize("name", list(REQUESTS))
def test_a_request_is_seen_and_answered_as_uvicorn_does(
    servers: tuple[ThreadedServer, ThreadedServer], name: str
) -> None:
    ours, uvicorns = servers
    raw = REQUESTS[name]
    expected = exchange(uvicorns.port, raw)
    assert b"HTTP/1.1 200 OK" in expected
    assert exchange(ours.port, raw) == expected


def test_pipelined_requests_are_seen_as_uvicorn_sees_them(
    servers: tuple[ThreadedServer, ThreadedServer],
) -> None:
    ours, uvicorns = servers
    raw = b"".join(REQUESTS[name] for name in ("post", "forwarded", "chunked", "get", "query"))
    expected = exchange(uvicorns.port, raw, answers=5)
    assert expected.count(b"HTTP/1.1 200 OK") == 5
    assert exchange(ours.port, raw, answers=5) == expected


def test_forwarded_headers_change_the_scope_of_a_trusted_client_only() -> None:
    """127.0.0.1 is trusted by default; here no client is."""
    raw = REQUESTS["forwarded"]
    ours = ThreadedServer(echo, gateway=True, forwarded_allow_ips="10.9.9.9").start()
    uvicorns = ThreadedServer(echo, forwarded_allow_ips="10.9.9.9").start()
    try:
        answer = exchange(ours.port, raw)
        assert answer == exchange(uvicorns.port, raw)
        seen: dict[str, Any] = orjson.loads(answer.split(b"\r\n\r\n", 1)[1])
        assert seen["client"] == ["127.0.0.1", 0] and seen["scheme"] == "http"
    finally:
        ours.stop()
        uvicorns.stop()


def test_without_proxy_headers_the_scope_is_the_connections() -> None:
    raw = REQUESTS["forwarded"]
    ours = ThreadedServer(echo, gateway=True, proxy_headers=False).start()
    try:
        seen: dict[str, Any] = orjson.loads(exchange(ours.port, raw).split(b"\r\n\r\n", 1)[1])
        assert seen["client"] == ["127.0.0.1", 0] and seen["scheme"] == "http"
    finally:
        ours.stop()


def test_a_trusted_client_is_told_apart_from_the_forwarded_one(
    servers: tuple[ThreadedServer, ThreadedServer],
) -> None:
    seen: dict[str, Any] = orjson.loads(
        exchange(servers[0].port, REQUESTS["forwarded"]).split(b"\r\n\r\n", 1)[1]
    )
    assert seen["client"] == ["10.0.0.1", 0] and seen["scheme"] == "https"


async def capped_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the body as the proxied requests do, a 413 past the cap."""
    if scope["type"] != "http":
        return
    try:
        body = await ProxiedRequest(scope, receive).body()
        status, answer = 200, b"%d:%s" % (len(body), body[:16])
    except PayloadTooLarge as error:
        status, answer = 413, str(error).encode()
    headers = [(b"content-length", b"%d" % len(answer))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


@pytest.fixture(scope="module")
def capped() -> Iterator[tuple[ThreadedServer, ThreadedServer]]:
    ours = ThreadedServer(
        BodyLimit(capped_reader, max_bytes=10), gateway=True, interface="asgi3"
    ).start()
    uvicorns = ThreadedServer(BodyLimit(capped_reader, max_bytes=10), interface="asgi3").start()
    yield ours, uvicorns
    ours.stop()
    uvicorns.stop()


def chunked(*pieces: bytes, expect: bool = False) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    fields = ["transfer-encoding: chunked"] + (["expect: 100-continue"] if expect else [])
    return request("POST", "/v1/chat/completions", *fields, body=body)


BODIES = {
    "under": request("POST", "/", "content-length: 5", body=b"12345"),
    "at": chunked(b"12345", b"67890"),
    "over, whole": chunked(b"123456", b"7890a"),
    "empty": request("POST", "/", "content-length: 0"),
    "expect, under": chunked(b"123", expect=True),
    "expect, over": chunked(b"x" * 11, expect=True),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_the_body_cap_is_kept_as_around_uvicorns_receive(
    capped: tuple[ThreadedServer, ThreadedServer], name: str
) -> None:
    ours, uvicorns = capped
    expected = exchange(uvicorns.port, BODIES[name], marker=b"\r\n\r\n")
    assert (b" 413 " in expected) == ("over" in name)
    assert exchange(ours.port, BODIES[name], marker=b"\r\n\r\n") == expected


def test_a_body_over_the_cap_in_pieces_is_a_413(
    capped: tuple[ThreadedServer, ThreadedServer],
) -> None:
    for server in capped:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(request("POST", "/", "transfer-encoding: chunked") + b"6\r\n123456\r\n")
            threading.Event().wait(0.05)  # the first piece is read alone
            sock.sendall(b"6\r\n7890ab\r\n0\r\n\r\n")
            sock.settimeout(10)
            assert sock.recv(65536).startswith(b"HTTP/1.1 413 ")
