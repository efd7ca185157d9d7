"""The gateway's request cycle on real sockets: answers written whole stay valid HTTP/1.1.

Each answer is read off a raw socket and parsed by h11, so a head, a length or a chunk framing
gone wrong fails here; the same answers through an ASGI transport (no cycle) are the reference.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import h11
import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from gateway.http.asgi import send_whole, to_asgi
from gateway.proxy.reply import Reply
from tests.conftest import StartGateway
from tests.e2e.test_serve_tls import self_signed
from tests.support import ThreadedServer

BIG = bytes(range(256)) * 1024  # 256 KiB: past the join threshold and the transport's buffer


def event(n: int, pause: int) -> bytes:
    """The relay's ``n``-th chunk (every other one large when it pauses)."""
    return b"data: %d %s\n\n" % (n, b"x" * (pause * 64 * 1024 if n % 2 else 10))


def stream_chunks(count: int, pause: int, done: int) -> list[bytes]:
    """``count`` events, then the event that ends the stream if ``done``."""
    return [event(n, pause) for n in range(count)] + ([b"data: [DONE]\n\n"] if done else [])


class Recording:
    """A transport that records each write (``write`` or ``writelines``) it passes on."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def writelines(self, pieces: list[bytes]) -> None:
        self._writes.append(b"".join(pieces))
        self._transport.writelines(pieces)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Answers:
    """A small ASGI app answering by path through the gateway's own senders; below
    ``/counted`` the transport's writes are recorded."""

    def __init__(self) -> None:
        self.after_calls = 0
        self.relay_closed = threading.Event()
        self.writes: list[bytes] = []

    def _after(self) -> None:
        self.after_calls += 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        query: bytes = scope["query_string"]
        if path.startswith("/counted/"):
            path = path.removeprefix("/counted")
            cycle = send.__self__  # type: ignore[attr-defined]
            self.writes = []
            cycle.transport = Recording(cycle.transport, self.writes)
        if path == "/json":
            reply = Reply(200, {"X-One": "1"}, b'{"a":1}', "application/json", self._after)
            await send_whole(reply, send)
        elif path == "/plain":  # lower-case names only: the cycle's plain answer
            reply = Reply(200, {"x-one": "1", "x-two": "two"}, b'{"a":1}', after=self._after)
            await send_whole(reply, send)
        elif path == "/plain-text":  # a charset added, a body written beside its head
            await send_whole(Reply(201, {"x-one": "1"}, BIG, "text/plain"), send)
        elif path == "/plain-typed":  # its own content-type: no other added
            await send_whole(Reply(200, {"content-type": "application/x", "x-a": ""}, b"{}"), send)
        elif path == "/big":
            await send_whole(Reply(200, {}, BIG, "application/octet-stream"), send)
        elif path == "/close":
            await send_whole(Reply(200, {"connection": "close"}, b"{}"), send)
        elif path == "/empty":
            await send_whole(Reply(204, {}, b"", None), send)
        elif path == "/header":  # a value from elsewhere with a control character in it
            value = query.decode().replace("CRLF", "\r\n").replace("SOH", "\x01")
            await send_whole(Reply(200, {"x-from": value}, b"{}", after=self._after), send)
        elif path == "/name":  # a name uvicorn refuses
            await send_whole(Reply(200, {"x from": "1"}, b"{}", after=self._after), send)
        elif path == "/stream":
            count, pause, done, linger = (int(part) for part in (query + b"&0&0").split(b"&")[:4])
            chunks = self._chunks(stream_chunks(count, pause, done), pause, linger)
            await to_asgi(Reply(200, {}, chunks, "text/event-stream"))(scope, receive, send)

    async def _chunks(self, chunks: list[bytes], pause: int, linger: int) -> AsyncIterator[bytes]:
        """``chunks``, each after a wait if ``pause``; the end after one if ``linger``."""
        try:
            for chunk in chunks:
                if pause:
                    await asyncio.sleep(0.005)
                yield chunk
            if linger:
                await asyncio.sleep(0.005)
        finally:
            self.relay_closed.set()


@pytest.fixture(scope="module")
def answers() -> Iterator[tuple[Answers, ThreadedServer]]:
    app = Answers()
    server = ThreadedServer(app, gateway=True).start()
    yield app, server
    server.stop()


@pytest.fixture(scope="module")
def reference(answers: tuple[Answers, ThreadedServer]) -> Iterator[ThreadedServer]:
    server = ThreadedServer(answers[0]).start()  # uvicorn's own protocol and cycle
    yield server
    server.stop()


DATE = re.compile(rb"date: [^\r]*\r\n")
REQUEST_LINE = re.compile(rb"(GET|HEAD|POST) \S+ HTTP/1\.[01]\r\n")


def exchange(port: int, raw: bytes, *, read_after: float = 0.0) -> bytes:
    """Sends ``raw`` (requests) on a new connection; everything received until each request
    has its answer or the server closes the connection."""
    methods = REQUEST_LINE.findall(raw)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        if read_after:
            threading.Event().wait(read_after)  # the server's writes back up meanwhile
        sock.settimeout(10)  # a server that holds the connection fails the test
        received = b""
        while chunk := sock.recv(1 << 20):
            received += chunk
            if len(parse(received, methods)) == len(methods):
                break
        return received


def closed_after(port: int, raw: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(raw)
        sock.settimeout(5)  # a connection left open fails the test
        return all(iter(lambda: sock.recv(65536), b""))


def parse(data: bytes, methods: list[bytes] | None = None) -> list[tuple[h11.Response, bytes]]:
    """Every response in ``data``, parsed as a client would (h11 fails on any framing error);
    ``methods``: the requests' methods, GET unless told."""
    conn = h11.Connection(h11.CLIENT)
    answers: list[tuple[h11.Response, bytes]] = []
    conn.receive_data(data)
    for method in methods or [b"GET"] * 8:
        conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
        conn.send(h11.EndOfMessage())
        head, body = None, b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if event is h11.NEED_DATA:
                return answers
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
        assert head is not None
        answers.append((head, body))
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            return answers
        conn.start_next_cycle()
    return answers


def header(response: h11.Response, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key == name), None)


def get(path: str, *extra: str) -> bytes:
    return "\r\n".join([f"GET {path} HTTP/1.1", "host: x", *extra, "", ""]).encode()


def test_a_json_answer_is_one_valid_response_with_its_length(answers: Any) -> None:
    app, server = answers
    before = app.after_calls
    [(head, body)] = parse(exchange(server.port, get("/json")))
    assert head.status_code == 200
    assert header(head, b"content-length") == b"7"
    assert header(head, b"content-type") == b"application/json"
    assert header(head, b"x-one") == b"1"
    assert header(head, b"date") is not None  # uvicorn's default headers stay
    assert body == b'{"a":1}'
    assert app.after_calls == before + 1


@pytest.mark.parametrize(
    "raw",
    [
        get("/json"),
        get("/json", "connection: close"),
        get("/plain"),
        get("/plain", "connection: close"),
        b"GET /plain HTTP/1.0\r\n\r\n",
        b"HEAD /plain HTTP/1.1\r\nhost: x\r\n\r\n" + get("/plain"),
        get("/close") + get("/plain-text") + get("/plain-typed"),
        b"GET /json HTTP/1.0\r\n\r\n",
        b"HEAD /json HTTP/1.1\r\nhost: x\r\n\r\n" + get("/empty"),
        get("/close") + get("/json"),
        get("/big"),
        get("/stream?0&0") + get("/stream?3&0&1") + get("/stream?4&1&1&1"),
        get("/header?aCRLFinjected:1"),
        get("/header?aSOHb"),
        get("/name"),
    ],
)
def test_the_bytes_are_the_ones_uvicorns_send_writes(
    answers: Any, reference: ThreadedServer, raw: bytes
) -> None:
    """The same app served by plain uvicorn (its cycle's ``send`` writing each message)."""
    _, server = answers
    ours, theirs = (DATE.sub(b"", exchange(port, raw)) for port in (server.port, reference.port))
    assert ours == theirs


def test_pipelined_requests_are_answered_in_order(answers: Any) -> None:
    _, server = answers
    raw = get("/json") + get("/empty") + get("/json") + get("/close") + get("/json")
    parsed = parse(exchange(server.port, raw))
    assert [head.status_code for head, _ in parsed] == [200, 204, 200, 200]  # then closed
    assert [body for _, body in parsed] == [b'{"a":1}', b"", b'{"a":1}', b"{}"]
    assert header(parsed[1][0], b"content-length") is None  # a 204 has no length, no chunks
    assert header(parsed[3][0], b"connection") == b"close"


def test_connection_close_is_honoured(answers: Any) -> None:
    _, server = answers
    for raw in (get("/json", "connection: close"), b"GET /json HTTP/1.0\r\n\r\n"):
        [(head, body)] = parse(exchange(server.port, raw))
        assert header(head, b"connection") == b"close"
        assert body == b'{"a":1}'
        assert closed_after(server.port, raw)


def test_head_sends_the_length_without_the_body(answers: Any) -> None:
    _, server = answers
    raw = b"HEAD /json HTTP/1.1\r\nhost: x\r\n\r\n" + get("/json")
    parsed = parse(exchange(server.port, raw), [b"HEAD", b"GET"])
    assert [head.status_code for head, _ in parsed] == [200, 200]
    assert header(parsed[0][0], b"content-length") == b"7"
    assert [body for _, body in parsed] == [b"", b'{"a":1}']


def test_a_body_past_the_transports_buffer_arrives_whole(answers: Any) -> None:
    _, server = answers
    [(head, body)] = parse(exchange(server.port, get("/big") + get("/json"), read_after=0.2))[:1]
    assert header(head, b"content-length") == str(len(BIG)).encode()
    assert body == BIG


@pytest.mark.parametrize("path", ["/header?aCRLFinjected:1", "/header?aSOHb", "/name"])
def test_a_header_field_uvicorn_refuses_is_never_written(answers: Any, path: str) -> None:
    """As with uvicorn's own ``send``: nothing of the answer is written, the connection is
    closed, and the reply's ``after`` still runs."""
    app, server = answers
    before = app.after_calls
    assert exchange(server.port, get(path)) == b""
    assert app.after_calls == before + 1


@pytest.mark.parametrize(("count", "pause", "done"), [(0, 0, 0), (1, 0, 1), (5, 0, 0), (6, 1, 1)])
def test_a_stream_is_valid_chunked_http(answers: Any, count: int, pause: int, done: int) -> None:
    """Chunks ready at once and chunks that wait (some large enough to back the transport
    up): the events arrive whole and in order, the chunked framing ends once."""
    app, server = answers
    app.relay_closed.clear()
    raw = get(f"/stream?{count}&{pause}&{done}") + get("/json")
    parsed = parse(exchange(server.port, raw, read_after=0.2 if pause else 0.0))
    assert [head.status_code for head, _ in parsed] == [200, 200]
    stream_head, events = parsed[0]
    assert header(stream_head, b"transfer-encoding") == b"chunked"
    assert header(stream_head, b"content-type") == b"text/event-stream"
    assert events == b"".join(stream_chunks(count, pause, done))
    assert parsed[1][1] == b'{"a":1}'  # the next answer on the connection follows the end
    assert app.relay_closed.wait(5)


def test_a_json_answer_is_one_write(answers: Any) -> None:
    app, server = answers
    data = exchange(server.port, get("/counted/json"))
    assert app.writes == [data]
    data = exchange(server.port, get("/counted/big"))
    assert app.writes == [data]
    for path in ("/counted/plain", "/counted/plain-text"):
        data = exchange(server.port, get(path))
        assert app.writes == [data]


def test_a_plain_answer_is_valid_with_its_length_and_type(answers: Any) -> None:
    app, server = answers
    before = app.after_calls
    raw = get("/plain") + get("/plain-text") + get("/plain-typed")
    parsed = parse(exchange(server.port, raw))
    assert [head.status_code for head, _ in parsed] == [200, 201, 200]
    assert [body for _, body in parsed] == [b'{"a":1}', BIG, b"{}"]
    (plain, _), (text, _), (typed, _) = parsed
    assert [(key, value) for key, value in plain.headers if key not in (b"date", b"server")] == [
        (b"x-one", b"1"),
        (b"x-two", b"two"),
        (b"content-length", b"7"),
        (b"content-type", b"application/json"),
    ]
    assert header(text, b"content-type") == b"text/plain; charset=utf-8"
    assert [key for key, _ in typed.headers].count(b"content-type") == 1
    assert header(typed, b"content-type") == b"application/x"
    assert app.after_calls == before + 1


@pytest.mark.parametrize(
    ("count", "pause", "done", "linger", "end_alone"),
    [
        (0, 0, 0, 0, False),  # no chunk: the head and the end
        (0, 0, 1, 0, False),
        (1, 0, 0, 0, True),  # no [DONE]: the end is not asked for before the chunk is written
        (3, 0, 1, 0, False),
        (3, 1, 1, 0, False),
        (3, 1, 0, 0, True),
        (2, 0, 1, 1, True),  # the end must be waited for: [DONE] is not held back for it
    ],
)
def test_a_stream_starts_with_its_head_and_ends_with_its_last_chunk(
    answers: Any, count: int, pause: int, done: int, linger: int, end_alone: bool
) -> None:
    """The head leaves with the first chunk, each chunk in one write, the body's end with the
    ``[DONE]`` chunk when the end is there without waiting for it."""
    app, server = answers
    data = exchange(server.port, get(f"/counted/stream?{count}&{pause}&{done}&{linger}"))
    writes = app.writes
    assert b"".join(writes) == data
    expected = [
        b"%x\r\n%b\r\n" % (len(chunk), chunk) for chunk in stream_chunks(count, pause, done)
    ]
    if end_alone:
        expected.append(b"0\r\n\r\n")
    elif expected:
        expected[-1] += b"0\r\n\r\n"
    else:
        expected = [b"0\r\n\r\n"]
    head, _, first = writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert [first, *writes[1:]] == expected


def test_answers_over_tls_arrive_whole(
    answers: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Over TLS too (the TLS transport takes the head and a large body as two pieces)."""
    app, _ = answers
    certfile, keyfile = self_signed(tmp_path_factory.mktemp("tls"))
    options = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}
    server = ThreadedServer(app, gateway=True, **options).start()
    try:
        with httpx.Client(base_url=f"https://127.0.0.1:{server.port}", verify=str(certfile)) as c:
            assert c.get("/json").content == b'{"a":1}'
            assert c.get("/big").content == BIG
            assert c.get("/stream?3&1&1").content == b"".join(stream_chunks(3, 1, 1))
    finally:
        server.stop()


def chat(model_tokens: int, stream: bool = False, extra: str = "") -> bytes:
    messages = [{"role": "user", "content": "hi"}]
    body = orjson.dumps(
        {"model": "text", "messages": messages, "max_tokens": model_tokens, "stream": stream}
    )
    return (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {{key}}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def test_pipelined_chats_through_the_gateway(start_gateway: StartGateway) -> None:
    gw = start_gateway()
    port = int(gw.url.rsplit(":", 1)[1])
    key = gw.key().encode()
    raw = (chat(1) + chat(2, stream=True) + chat(3, extra="connection: close\r\n")).replace(
        b"{key}", key
    )
    parsed = parse(exchange(port, raw), [b"POST"] * 3)
    assert [head.status_code for head, _ in parsed] == [200, 200, 200]
    first, streamed, last = (body for _, body in parsed)
    assert orjson.loads(first)["choices"][0]["message"]["content"] == "Hello"
    assert header(parsed[0][0], b"content-length") == str(len(first)).encode()
    assert streamed.endswith(b"data: [DONE]\n\n")
    assert b'"content":"from"' in streamed.replace(b" ", b"")
    assert orjson.loads(last)["choices"][0]["message"]["content"] == "Hello from mock/ok"
    assert header(parsed[2][0], b"connection") == b"close"


def test_send_whole_without_the_cycle_sends_asgi_messages() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    calls: list[int] = []
    reply = Reply(201, {"X-A": "b"}, b"[]", "text/plain", lambda: calls.append(1))
    asyncio.run(send_whole(reply, send))
    assert sent == [
        {
            "type": "http.response.start",
            "status": 201,
            "headers": [
                (b"x-a", b"b"),
                (b"content-length", b"2"),
                (b"content-type", b"text/plain; charset=utf-8"),
            ],
        },
        {"type": "http.response.body", "body": b"[]"},
    ]
    assert calls == [1]
