"""A mock upstream in its own process: the fixed chat.completion JSON after a set delay.

Raw asyncio protocols (no framework) so its own cost is small; the delay is a timer, not a
sleep, so concurrent requests wait in parallel like a real provider's. Any POST gets the same
answer (the nginx mock's, ``mock_nginx.json_answer``); keep-alive is honoured.

    python bench/json_upstream.py --port 9000 [--delay-ms 30]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import cast

import mock_nginx
from aio import run_loop, serve_protocol
from slow_upstream import _content_length


def response_bytes() -> bytes:
    body = mock_nginx.json_answer().encode()
    head = (
        f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class DelayedJson(asyncio.Protocol):
    """One connection: each complete request is answered ``delay_s`` later, in order."""

    def __init__(self, answer: bytes, delay_s: float) -> None:
        self._answer = answer
        self._delay_s = delay_s
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            body_end = head_end + 4 + _content_length(self._buffer[:head_end])
            if len(self._buffer) < body_end:
                return
            self._buffer = self._buffer[body_end:]
            if self._delay_s > 0:
                asyncio.get_running_loop().call_later(self._delay_s, self._write)
            else:
                self._write()

    def _write(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(self._answer)


async def serve(host: str, port: int, delay_s: float) -> None:
    answer = response_bytes()
    await serve_protocol(host, port, lambda: DelayedJson(answer, delay_s))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve(args.host, args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
