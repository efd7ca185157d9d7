"""The gateway's work to relay one SSE chunk without sockets, run N times (for callgrind).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" bench/relay_work.py 2000
    (then 22000; with a source tree first on PYTHONPATH to measure that tree; ``--cycle``
    after the count: the answer written by the gateway's own server cycle, as served)

One streamed answer through the stack a relayed chunk crosses: the upstream connection's
parser (``wire.connection``, fed the bytes ``data_received`` would get, one chunk per event
loop turn), its body iterator (``wire.transport``), the SSE relay (``proxy.streaming``) and the
relay response (``http.relay_response``) into an ASGI ``send`` that drops the message, or
(``--cycle``) into the ``GatewayCycle`` the gateway's server gives it (``http.cycle``), writing
to a transport that drops the bytes. Not counted: the sockets and the event loop's polling.
Run it with two counts and divide the difference of the instructions by the difference of the
counts: what one chunk costs, without the interpreter's start (the slow-stream scenario
relays ~27,000 chunks/s).
"""

from __future__ import annotations

import asyncio
import logging
import sys

from aio import run_loop
from starlette.types import Message
from uvicorn.protocols.http.flow_control import FlowControl

from gateway.http.cycle import GatewayCycle
from gateway.http.relay_response import RelayResponse
from gateway.proxy.streaming import SSERelay, StreamResult
from gateway.wire.connection import Connection
from gateway.wire.transport import ResponseStream

CONTENT = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok "}}]}\n\n'  # noqa: E501
TAIL = (
    b'data: {"id":"c","object":"chat.completion.chunk","choices":[],'
    b'"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}\n\ndata: [DONE]\n\n'
)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class _Socket:
    """What the connection writes to and pauses: nothing."""

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


class _Pool:
    def release(self, connection: Connection, origin: object) -> None:
        pass


class _Answer:
    def __init__(self, stream: ResponseStream) -> None:
        self.stream = stream

    async def aclose(self) -> None:
        await self.stream.aclose()


def framed(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def server_cycle(writes: list[int]) -> GatewayCycle:
    """The cycle the gateway's server protocol runs a request in, over a transport that only
    counts its writes."""

    class Client(_Socket):
        def write(self, data: bytes) -> None:
            writes[0] += 1

    client = Client()
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b""}
    scope["http_version"] = "1.1"
    logger = logging.getLogger("relay_work")
    return GatewayCycle(
        scope,  # type: ignore[arg-type]
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


async def relay(chunks: int, cycle: bool) -> tuple[int, StreamResult]:
    loop = asyncio.get_running_loop()
    connection = Connection(loop)
    connection.connection_made(_Socket())  # type: ignore[arg-type]
    exchange = loop.create_task(connection.exchange(b"POST / HTTP/1.1\r\n\r\n", b"", 30.0))
    await asyncio.sleep(0)
    connection.data_received(HEAD)
    await exchange
    stream = ResponseStream(_Pool(), connection, None, 30.0)  # type: ignore[arg-type]
    ended: list[StreamResult] = []
    body = SSERelay(
        b"", aiter(stream), _Answer(stream), client_wants_usage=False, on_end=ended.append
    )  # type: ignore[arg-type]
    response = RelayResponse(body, headers={"cache-control": "no-cache"})
    sent = 0
    never: asyncio.Future[Message] = loop.create_future()

    async def receive() -> Message:
        return await never

    async def send(message: Message) -> None:
        nonlocal sent
        sent += 1

    writes = [0]
    to = server_cycle(writes).send if cycle else send  # the cycle's own, as served
    relaying = loop.create_task(response({"type": "http"}, receive, to))
    piece = framed(CONTENT)
    for _ in range(chunks):
        await asyncio.sleep(0)  # the relay waits for the next chunk, as it does between reads
        connection.data_received(piece)
    await asyncio.sleep(0)
    connection.data_received(framed(TAIL) + b"0\r\n\r\n")
    await relaying
    return sent + writes[0], ended[0]


def main() -> None:
    chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    cycle = "--cycle" in sys.argv[2:]
    sent, result = run_loop(relay(chunks, cycle))
    if not result.completed or result.events != chunks:  # every chunk went through the relay
        raise SystemExit(
            f"relay_work: {result.events} of {chunks} events, completed={result.completed}"
        )
    way = "writes" if cycle else "sends"
    print(f"relay_work chunks={chunks} {way}={sent} events={result.events}")


if __name__ == "__main__":
    main()
