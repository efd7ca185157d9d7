"""A relay over the gateway's own transport, served by its own protocol, on real sockets: the
chunks after the first are written where the upstream connection parses them (no task wakes),
and the relay still holds the upstream back for a slow client, ends at the idle timeout only
when the upstream is idle, and ends at once, counted gone, when its client leaves.

Each write on the client's transport is recorded with whether a task made it: a chunk pushed
from the upstream connection's callbacks is written outside any task.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import h11
import httpx
import orjson
import pytest
from starlette.types import Receive, Scope, Send

from gateway.http.relay_response import RelayResponse
from gateway.proxy.streaming import IDLE_TIMEOUT, SSERelay, StreamResult
from gateway.wire import NativeTransport
from gateway.wire.transport import BodyReader
from tests.hostile_upstream import HostileUpstream, head
from tests.support import ThreadedServer

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
MB = 1024 * 1024
PACED = 12  # events sent one at a time, each once the client has the one before
FLOOD = 64 * MB  # far more than the sockets' buffers hold
IDLE_S = 1.0  # the relay's idle timeout


def content(text: str) -> bytes:
    document = {"object": "chat.completion.chunk", "choices": [{"delta": {"content": text}}]}
    return b"data: " + orjson.dumps(document) + b"\n\n"


USAGE_ONLY = b"data: " + orjson.dumps({"choices": [], "usage": USAGE}) + b"\n\n"
DONE = b"data: [DONE]\n\n"
BIG_EVENTS = [content(f"{n:06d}" + "x" * 60_000) for n in range(FLOOD // 60_000)]


def framed(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


class Go:
    """The test's leave for the upstream to send its next event (across threads)."""

    def __init__(self) -> None:
        self._tokens = threading.Semaphore(0)

    def release(self, count: int = 1) -> None:
        self._tokens.release(count)

    async def wait(self) -> bool:
        return await asyncio.to_thread(self._tokens.acquire, timeout=10)


# one per script: a wait left over by one test never takes the next test's leave
GO_PACED, GO_IDLE, GO_ENDLESS = Go(), Go(), Go()


async def paced() -> AsyncIterator[bytes]:
    """``PACED`` events, each when the test says so, then usage and ``[DONE]`` with the end."""
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    for n in range(PACED):
        if n and not await GO_PACED.wait():
            return
        yield framed(content(f"e{n}"))
    await GO_PACED.wait()
    yield framed(USAGE_ONLY + DONE) + b"0\r\n\r\n"


async def paced_then_idle() -> AsyncIterator[bytes]:
    """Events as the test says, and then nothing (the connection left open)."""
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    for n in range(PACED):
        if n and not await GO_IDLE.wait():
            return
        yield framed(content(f"e{n}"))
    await asyncio.sleep(4 * IDLE_S)


async def slow() -> AsyncIterator[bytes]:
    """Events each within the idle timeout, all of them well past it."""
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    for n in range(5):
        await asyncio.sleep(0.4 * IDLE_S)
        yield framed(content(f"e{n}"))
    yield framed(DONE) + b"0\r\n\r\n"


async def flood() -> AsyncIterator[bytes]:
    """Large events as fast as the gateway reads them."""
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    for big in BIG_EVENTS:
        yield framed(big)
    yield framed(DONE) + b"0\r\n\r\n"


async def endless() -> AsyncIterator[bytes]:
    """Events as the test says, for as long as the gateway reads them."""
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    for n in range(100_000):
        if n and not await GO_ENDLESS.wait():
            return
        yield framed(content(f"e{n}"))


SCRIPTS = {
    "paced": paced,
    "paced-then-idle": paced_then_idle,
    "slow": slow,
    "flood": flood,
    "endless": endless,
}


class Recording:
    """The client's transport, recording each write and whether a task made it."""

    def __init__(self, transport: Any, writes: list[tuple[bytes, bool]]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append((bytes(data), asyncio.current_task() is not None))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Relays:
    """Serves ``/<model>``: the upstream's stream of that model, relayed by ``RelayResponse``
    through the cycle of the gateway's protocol; records the writes and the relay's end."""

    def __init__(self, upstream: HostileUpstream) -> None:
        self.upstream = upstream
        self.writes: list[tuple[bytes, bool]] = []
        self.ended: list[StreamResult] = []
        self.over = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):  # the request read, as the gateway does
            pass
        cycle = send.__self__  # type: ignore[attr-defined]
        self.writes, self.ended = [], []
        self.over.clear()
        cycle.transport = Recording(cycle.transport, self.writes)
        transport = NativeTransport()
        try:
            relay = await self._relay(transport, scope["path"].strip("/"))
            response = RelayResponse(relay, headers={}, media_type="text/event-stream")
            await response(scope, receive, send)
        finally:
            await transport.aclose()
            self.over.set()

    async def _relay(self, transport: NativeTransport, model: str) -> SSERelay:
        request = httpx.Request(
            "POST",
            self.upstream.base_url + "/chat/completions",
            content=orjson.dumps({"model": model}),
            extensions={"timeout": {"connect": 5, "read": IDLE_S, "write": 5, "pool": 5}},
        )
        response = await transport.handle_async_request(request)
        rest = aiter(response.stream)  # type: ignore[arg-type]
        assert isinstance(rest, BodyReader)  # the gateway's own transport
        first = await anext(rest, b"")
        return SSERelay(first, rest, response, client_wants_usage=False, on_end=self.ended.append)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Relays, ThreadedServer, HostileUpstream]]:
    with HostileUpstream(SCRIPTS).running() as upstream:
        app = Relays(upstream)
        server = ThreadedServer(app, gateway=True).start()
        try:
            yield app, server, upstream
        finally:
            server.stop()


def connect(port: int, model: str, receive_buffer: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer:  # before connecting: the window is agreed then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(20)  # a relay that never ends fails the test
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /{model} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    return sock


class Received:
    """What the client has read of its answer, and how many SSE events that holds."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.data = bytearray()
        self.events = 0  # SSE events end in a blank line; the framing is CRLF

    def until_events(self, count: int) -> None:
        while self.events < count:
            self._more()

    def until_end(self) -> bytes:
        while not self.data.endswith(b"\r\n0\r\n\r\n"):
            self._more()
        return bytes(self.data)

    def _more(self) -> None:
        piece = self._sock.recv(1 << 20)
        assert piece, "the answer ended early"
        start = max(len(self.data) - 1, 0)
        self.data += piece
        self.events += self.data.count(b"\n\n", start)


def body_of(data: bytes) -> tuple[h11.Response, bytes, bool]:
    """The answer in ``data`` as h11 reads it (a framing error fails), and whether it ended."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    answer, pieces = None, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA or isinstance(event, h11.EndOfMessage):
            assert answer is not None
            return answer, b"".join(pieces), event is not h11.NEED_DATA
        if isinstance(event, h11.Response):
            answer = event
        elif isinstance(event, h11.Data):
            pieces.append(bytes(event.data))


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_chunks_after_the_first_are_written_from_the_upstreams_callbacks(served: Any) -> None:
    app, server, _ = served
    with connect(server.port, "paced") as sock:
        received = Received(sock)
        for n in range(1, PACED + 1):
            received.until_events(n)
            GO_PACED.release()  # the next event, once the client has this one
        data = received.until_end()
    answer, body, ended = body_of(data)
    assert answer.status_code == 200 and ended
    assert body == b"".join(content(f"e{n}") for n in range(PACED)) + DONE
    assert app.over.wait(5)
    [result] = app.ended
    assert result.usage == USAGE and result.completed and result.events == PACED
    assert not result.client_gone and result.bytes_out == len(body)
    writes = app.writes
    assert b"".join(data for data, _ in writes) == data
    # the head with the first event by the task; each later event pushed on its own; the
    # [DONE] event (the usage-only one dropped) with the body's end by the task again
    assert [in_task for _, in_task in writes] == [True] + [False] * (PACED - 1) + [True]
    assert [data for data, _ in writes[1:-1]] == [framed(content(f"e{n}")) for n in range(1, PACED)]
    assert writes[-1][0] == framed(DONE) + b"0\r\n\r\n"


def test_a_stream_pushed_past_the_idle_timeout_is_not_idle(served: Any) -> None:
    """Each pushed event restarts the idle timeout, as a read would."""
    app, server, _ = served
    with connect(server.port, "slow") as sock:
        data = Received(sock).until_end()
    _, body, ended = body_of(data)
    assert ended and body == b"".join(content(f"e{n}") for n in range(5)) + DONE
    assert app.over.wait(5)
    [result] = app.ended
    assert result.completed and result.upstream_cut is None and result.error is None
    assert any(not in_task for _, in_task in app.writes)  # some were pushed


def test_a_stream_idle_while_pushed_ends_at_the_idle_timeout(served: Any) -> None:
    app, server, _ = served
    with connect(server.port, "paced-then-idle") as sock:
        received = Received(sock)
        for n in range(1, PACED + 1):
            received.until_events(n)
            if n < PACED:
                GO_IDLE.release()
        data = received.until_end()
    _, body, ended = body_of(data)
    assert ended and body.endswith(DONE) and b"idle timeout" in body
    assert body.startswith(b"".join(content(f"e{n}") for n in range(PACED)))
    assert app.over.wait(5)
    [result] = app.ended
    assert result.upstream_cut == IDLE_TIMEOUT and not result.completed
    assert not result.client_gone


def test_a_client_that_does_not_read_holds_the_upstream_back(served: Any) -> None:
    """Pushing stops while the client's transport is paused: the relay stops reading the
    upstream, which then stops sending; once the client reads, everything arrives in order."""
    app, server, upstream = served
    upstream.bytes_sent.pop("flood", None)
    with connect(server.port, "flood", receive_buffer=16 * 1024) as sock:
        received = Received(sock)
        received.until_events(1)  # pushing has begun

        def settled() -> bool:  # the upstream sent nothing more for a while
            before = upstream.bytes_sent.get("flood", 0)
            time.sleep(0.3)
            return upstream.bytes_sent.get("flood", 0) == before > 0

        assert wait_for(settled, 20)
        held = upstream.bytes_sent["flood"]
        data = received.until_end()
    assert held < 40 * MB  # the upstream was held back (the sockets' buffers hold the rest)
    _, body, ended = body_of(data)
    assert ended and body == b"".join(BIG_EVENTS) + DONE
    assert app.over.wait(5)
    [result] = app.ended
    assert result.completed and result.events == len(BIG_EVENTS) and not result.client_gone
    assert any(not in_task for _, in_task in app.writes)  # some were pushed
    assert sum(in_task for _, in_task in app.writes) > 2  # and the task wrote after a pause


def test_a_client_that_leaves_mid_stream_ends_the_relay_at_once(served: Any) -> None:
    """Gone while its events are pushed: the relay ends (the upstream closed) although the
    upstream sends nothing more, counted as the client's leaving, not an upstream's end."""
    app, server, _ = served
    with connect(server.port, "endless") as sock:
        received = Received(sock)
        for n in range(1, 6):  # events pushed, then the client goes
            received.until_events(n)
            if n < 5:
                GO_ENDLESS.release()
    assert app.over.wait(5)  # the upstream waits 10 s for its next leave
    [result] = app.ended
    assert result.client_gone and not result.completed and result.upstream_cut is None
    assert result.events == 5 and result.usage is None
    assert [in_task for _, in_task in app.writes] == [True] + [False] * 4
    GO_ENDLESS.release()  # the upstream's wait ends: it finds its connection closed
