"""The serving side's work for one chat request without sockets, run N times (for callgrind).

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        "$(python -c 'import sys; print(sys.executable)')" bench/serve_work.py 2000
    (then 4000; with a source tree first on PYTHONPATH to measure that tree; ``--stream``
    after the count: a streamed answer of 11 chunks instead of a JSON one)

One keep-alive connection of the gateway's server protocol (``http.serve_guard``), fed the
bytes a client sends, through the app (``http.asgi``: the body limit, the fast lane) to a
pipeline stand-in that reads what the real one reads of the request (its headers, the body)
and answers at once, as a JSON reply or a relay (``http.relay_response``), into a transport
that drops the bytes. Not counted: the sockets, the event loop's polling, the pipeline's own
work. Run it with two counts and divide the difference of the instructions by the difference
of the counts: what the serving side costs a request.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

from aio import run_loop
from starlette.middleware import Middleware
from uvicorn.server import ServerState

from gateway.http.asgi import GatewayApp
from gateway.http.body_limit import BodyLimit
from gateway.http.dispatch import Dispatch
from gateway.http.serve_guard import GuardedConfig, GuardedHttpToolsProtocol
from gateway.proxy.incoming import BODY_TIMED_OUT
from gateway.proxy.reply import Reply

BODY = (
    b'{"model":"bench-json","messages":[{"role":"system","content":"You are terse."},'
    b'{"role":"user","content":"Say hello in one short sentence."}],"stream":false,'
    b'"max_tokens":64}'
)
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:8080\r\n"
    b"content-type: application/json\r\naccept: text/event-stream\r\n"
    b"authorization: Bearer sk-bench-0123456789abcdef01234567\r\n"
    b"content-length: %d\r\n\r\n%b" % (len(BODY), BODY)
)
ANSWER = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello!"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,'
    b'"total_tokens":14}}'
)
HEADERS = {  # the gateway's usual answer headers
    "x-request-id": "0f6c3b1e9a2d4c5b8e7f6a5b4c3d2e1f",
    "x-gateway-route": "bench-json",
    "x-gateway-model": "bench-json",
    "x-gateway-provider": "openai",
    "x-gateway-attempts": "1",
    "x-gateway-overhead-ms": "0.412",
}
CHUNK = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"tok "}}]}\n\n'  # noqa: E501
LAST = b'data: {"id":"c","choices":[],"usage":{"total_tokens":14}}\n\ndata: [DONE]\n\n'


class Pipeline:
    """What the pipeline reads of a request, and an answer at once."""

    def __init__(self, stream: bool) -> None:
        self.stream = stream
        self.ran = 0

    async def handle(self, request: Any, endpoint: Any) -> Reply:
        headers = request.headers
        for name in ("x-request-id", "traceparent", "authorization", "content-length"):
            headers.get(name)
        headers.get("content-type", "")
        await request.body()
        request.scope.get(BODY_TIMED_OUT)
        for name in ("x-gateway-tags", "x-gateway-cache", "cache-control"):
            headers.get(name)
        self.ran += 1
        if self.stream:
            return Reply(200, {**HEADERS, "cache-control": "no-cache"}, _chunks(), None, _after)
        return Reply(200, dict(HEADERS), ANSWER, "application/json", _after)


def _after() -> None:
    pass


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(10):
        yield CHUNK
    yield LAST


class Transport(asyncio.Transport):
    """A client's connection that takes the bytes and drops them."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += len(data)

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


async def serve(count: int, stream: bool) -> tuple[int, int]:
    pipeline = Pipeline(stream)
    app = GatewayApp(
        pipeline,  # type: ignore[arg-type]
        Dispatch({}),
        middleware=[Middleware(BodyLimit, max_bytes=1 << 20)],
    )
    config = GuardedConfig(app, lifespan="off", access_log=False, log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = GuardedHttpToolsProtocol(config, ServerState(), {}, loop)
    transport = Transport()
    protocol.connection_made(transport)
    for _ in range(count):
        protocol.data_received(REQUEST)
        while not protocol.cycle.response_complete:
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the request's task ends
    if transport.closed:
        raise SystemExit("serve_work: the connection was closed")
    protocol.connection_lost(None)
    return pipeline.ran, transport.written


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    stream = "--stream" in sys.argv[2:]
    ran, written = run_loop(serve(count, stream))
    if ran != count:
        raise SystemExit(f"serve_work: {ran} of {count} requests answered")
    print(f"serve_work requests={count} stream={stream} bytes={written}")


if __name__ == "__main__":
    main()
