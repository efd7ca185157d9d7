"""The gateway's upstream-side work for one chat request without sockets, run N times (callgrind).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" bench/wire_work.py 2000
    (then 12000; with a source tree first on PYTHONPATH to measure that tree; ``--stream``
    after the count: a streamed request, its answer opened and read to its end)

One exchange as the proxy runs it, from the request's building to the answer's headers: the
upstream request (``providers.openai.build_request``), the attempt (``proxy.attempt_send``:
its time limit, the native transport's pool, the connection's write and parser) and the
answer's reading (``providers.bodies``) and forwarded headers. The upstream is a socket that
answers every write with nginx's bytes for the bench's JSON or SSE answer on the next event
loop turn. Run it with two counts and divide the difference of the instructions by the
difference of the counts: what one request costs the upstream side, without the interpreter's
start. Not counted: the sockets and the event loop's polling.
"""

from __future__ import annotations

import asyncio
import sys

from aio import run_loop
from mock_nginx import json_answer, sse_answer

from gateway.config.model import Model, RetryPolicy, Upstream
from gateway.providers.openai import build_request, forwarded_headers
from gateway.proxy.attempt_outcome import Opened
from gateway.proxy.attempt_send import Sender
from gateway.secret import Secret
from gateway.wire import NativeTransport
from gateway.wire.connection import Connection

BODY = b'{"model":"m","messages":[{"role":"user","content":"hello"}],"max_tokens":16}'


def nginx_answer(body: bytes, content_type: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Sun, 06 Dec 2026 22:00:00 GMT\r\n"
        b"Content-Type: %b\r\nContent-Length: %d\r\nConnection: keep-alive\r\n%b\r\n%b"
        % (content_type, len(body), extra, body)
    )


class _Socket:
    """Answers each request written to it with ``answer`` on the loop's next turn."""

    def __init__(self, loop: asyncio.AbstractEventLoop, answer: bytes) -> None:
        self._loop = loop
        self._answer = answer
        self.connection: Connection | None = None

    def write(self, data: bytes) -> None:
        assert self.connection is not None
        self._loop.call_soon(self.connection.data_received, self._answer)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def transport_answering(answer: bytes) -> NativeTransport:
    transport = NativeTransport()

    async def connect(origin: object, timeout: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        connection = Connection(loop)
        socket = _Socket(loop, answer)
        socket.connection = connection
        connection.connection_made(socket)  # type: ignore[arg-type]
        return connection

    transport._pool._connect = connect  # type: ignore[method-assign]
    return transport


async def exchanges(count: int, stream: bool) -> int:
    if stream:
        answer = nginx_answer(sse_answer().encode(), b"text/event-stream",
                              b"Cache-Control: no-cache\r\n")  # fmt: skip
    else:
        answer = nginx_answer(json_answer().encode(), b"application/json")
    transport = transport_answering(answer)
    upstream = Upstream("bench", "http://127.0.0.1:9/v1", Secret("sk-bench-upstream-key"))
    model = Model("m", upstream, "mock", "chat")
    sender = Sender(transport, RetryPolicy(), 16 * 1024 * 1024)
    read = 0
    for number in range(count):
        request = build_request(
            model,
            "/chat/completions",
            json_body=BODY,
            api_key=upstream.api_key,
            request_id=f"req-{number:08d}",
            accept="text/event-stream" if stream else None,
        )
        opened = await sender.send(model, request, not stream, ())
        assert isinstance(opened, Opened), opened
        response = opened.response
        headers = forwarded_headers(response)
        assert response.status_code == 200 and headers["content-type"]
        read += len(opened.first_chunk)
        if opened.rest is not None:
            async for chunk in opened.rest:
                read += len(chunk)
            await response.aclose()
    await transport.aclose()
    return read


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    stream = "--stream" in sys.argv[2:]
    read = run_loop(exchanges(count, stream))
    print(f"wire_work requests={count} stream={stream} bytes={read}")


if __name__ == "__main__":
    main()
