"""A relay over the gateway's own transport and cycle keeps the upstream's order of events.

The upstream connection is fed its bytes directly and the client's transport records each write,
so a test decides exactly what arrives between two turns of the loop: chunks pushed from the
connection's callbacks never overtake the one the relay holds back to send with the body's end.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl

from gateway.http.cycle import GatewayCycle
from gateway.http.relay_response import RelayResponse
from gateway.proxy.streaming import SSERelay, StreamResult
from gateway.wire.connection import Connection
from gateway.wire.transport import ResponseStream

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
DONE = b"data: [DONE]\n\n"


def event(text: str) -> bytes:
    return b'data: {"choices":[{"delta":{"content":"%s"}}]}\n\n' % text.encode()


def framed(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


class Upstream:
    """The upstream connection's socket: writes dropped, never paused."""

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class Client(Upstream):
    """The client's socket: each write recorded, with whether the relay's task made it (else
    the connection's callback did, fed by the test)."""

    def __init__(self) -> None:
        self.writes: list[tuple[bytes, bool]] = []
        self.relaying: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        self.writes.append((bytes(data), asyncio.current_task() is self.relaying))


class Pool:
    def release(self, connection: Connection, origin: object) -> None:
        pass


class Answer:
    def __init__(self, stream: ResponseStream) -> None:
        self.stream = stream

    async def aclose(self) -> None:
        await self.stream.aclose()


def cycle_over(client: Client) -> GatewayCycle:
    scope: Any = {"type": "http", "method": "POST", "path": "/", "query_string": b""}
    scope["http_version"] = "1.1"
    logger = logging.getLogger("test_relay_order")
    return GatewayCycle(
        scope,
        client,  # type: ignore[arg-type]
        FlowControl(client),  # type: ignore[arg-type]
        logger,
        logger,
        False,
        [],
        asyncio.Event(),
        False,
        True,
        lambda: None,
    )


async def turns(count: int = 3) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def relay(*reads: bytes | None) -> tuple[Client, StreamResult]:
    """The upstream's ``reads`` fed to the connection one by one, the loop turning where one
    is None; the relay written by the cycle to the client."""
    loop = asyncio.get_running_loop()
    connection = Connection(loop)
    connection.connection_made(Upstream())  # type: ignore[arg-type]
    exchange = loop.create_task(connection.exchange(b"POST / HTTP/1.1\r\n\r\n", b"", 5.0))
    await asyncio.sleep(0)
    connection.data_received(HEAD)
    await exchange
    stream = ResponseStream(Pool(), connection, None, 5.0)  # type: ignore[arg-type]
    ended: list[StreamResult] = []
    body = SSERelay(
        b"",
        aiter(stream),
        Answer(stream),  # type: ignore[arg-type]
        client_wants_usage=False,
        on_end=ended.append,
    )
    client = Client()
    never: asyncio.Future[Any] = loop.create_future()

    async def receive() -> Any:
        return await never

    response = RelayResponse(body, headers={"cache-control": "no-cache"})
    relaying = loop.create_task(response({"type": "http"}, receive, cycle_over(client).send))
    client.relaying = relaying
    await turns()
    for read in reads:
        if read is None:
            await turns()
        else:
            connection.data_received(read)
    await asyncio.wait_for(relaying, 5)
    return client, ended[0]


def payloads(client: Client) -> bytes:
    """What the client got after the head, the chunk framing taken off."""
    data = b"".join(write for write, _ in client.writes)
    body = data.partition(b"\r\n\r\n")[2]
    out = b""
    while body:
        size, _, body = body.partition(b"\r\n")
        length = int(size, 16)
        out, body = out + body[:length], body[length + 2 :]
    return out


def test_an_event_behind_the_last_one_held_back_is_written_after_it() -> None:
    # [DONE] is held back for the body's end; the event read with it in hand is not pushed
    # past it, though pushing is on for the events before
    reads = (
        framed(event("a")),
        None,
        framed(event("b")),
        framed(DONE),
        framed(event("c")),
        None,
        b"0\r\n\r\n",
    )
    client, result = asyncio.run(relay(*reads))
    assert payloads(client) == event("a") + event("b") + DONE + event("c")
    assert result.completed and result.events == 3
    pushed = [write for write, by_task in client.writes if not by_task]
    assert pushed == [framed(event("b"))]  # written from the connection's callback


def test_events_after_the_head_are_pushed_each_in_one_write() -> None:
    reads = (framed(event("a")), None, framed(event("b")), framed(event("c")), None)
    client, result = asyncio.run(relay(*reads, framed(DONE) + b"0\r\n\r\n"))
    assert payloads(client) == event("a") + event("b") + event("c") + DONE
    assert [write for write, by_task in client.writes if not by_task] == [
        framed(event("b")),
        framed(event("c")),
    ]
    assert result.completed and result.events == 3
