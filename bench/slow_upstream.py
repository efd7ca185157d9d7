"""A cheap slow-stream upstream: SSE chat chunks spaced 50-100 ms, each stamped with its send time.

Raw asyncio protocols (no framework), so thousands of concurrent streams cost little. Any POST
gets the same stream: a role chunk at once, ``bench_chunks`` content chunks (a request body
field, default 10) each after a random gap, then a finish chunk, a usage-only chunk and
``data: [DONE]``. Every chunk but [DONE] carries ``"ts": <time.time() when written>`` so a client
can compute how long the chunk took to reach it: the stamp is taken right before the chunk is
written to its socket (``os.write``, not left in uvloop's transport until the loop's turn
ends). Keep-alive is honoured.

    python bench/slow_upstream.py --port 9000 [--min-gap 0.05 --max-gap 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import time
from dataclasses import dataclass
from typing import cast

from aio import run_loop, serve_protocol

DEFAULT_CHUNKS = 10
MAX_CHUNKS = 100_000
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
DONE = b"data: [DONE]\n\n"
ROLE_CHOICES = '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'


@dataclass(frozen=True)
class Pacing:
    min_gap_s: float = 0.05
    max_gap_s: float = 0.1
    default_chunks: int = DEFAULT_CHUNKS


def event(choices: str, extra: str = "") -> bytes:
    """One stamped SSE event (the stamp is taken here, right before the write)."""
    return (
        'data: {"id":"chatcmpl-slow","object":"chat.completion.chunk","created":1700000000,'
        f'"model":"mock-slow","ts":{time.time()!r},"choices":{choices}{extra}}}\n\n'
    ).encode()


def content_event(index: int) -> bytes:
    return event(f'[{{"index":0,"delta":{{"content":"tok{index} "}},"finish_reason":null}}]')


def framed(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def requested_chunks(body: bytes, default: int) -> int:
    try:
        value = json.loads(body or b"{}").get("bench_chunks", default)
    except (ValueError, AttributeError):
        return default
    return max(0, min(int(value), MAX_CHUNKS)) if isinstance(value, int | float) else default


class SlowStream(asyncio.Protocol):
    """One connection: read a request, stream the answer on a timer, then wait for the next."""

    def __init__(self, pacing: Pacing, rng: random.Random) -> None:
        self._pacing = pacing
        self._rng = rng
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._fd = -1
        self._timer: asyncio.TimerHandle | None = None
        self._left = 0
        self._sent = 0
        self._streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._fd = transport.get_extra_info("socket").fileno()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._streaming:
            self._try_start()

    def _try_start(self) -> None:
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return
        length = _content_length(self._buffer[:head_end])
        body_end = head_end + 4 + length
        if len(self._buffer) < body_end:
            return
        body, self._buffer = self._buffer[head_end + 4 : body_end], self._buffer[body_end:]
        self._streaming = True
        self._left = requested_chunks(body, self._pacing.default_chunks)
        self._sent = 0
        self._write(HEAD + framed(event(ROLE_CHOICES)))
        self._schedule()

    def _schedule(self) -> None:
        gap = self._rng.uniform(self._pacing.min_gap_s, self._pacing.max_gap_s)
        self._timer = asyncio.get_running_loop().call_later(gap, self._tick)

    def _tick(self) -> None:
        if self._transport is None:
            return
        if self._left > 0:
            self._left -= 1
            self._sent += 1
            self._write(framed(content_event(self._sent)))
            self._schedule()
            return
        self._write(framed(self._tail()) + b"0\r\n\r\n")
        self._streaming = False
        self._timer = None
        if self._buffer:
            self._try_start()

    def _tail(self) -> bytes:
        finish = event('[{"index":0,"delta":{},"finish_reason":"stop"}]')
        usage = event(
            "[]",
            f',"usage":{{"prompt_tokens":12,"completion_tokens":{self._sent},'
            f'"total_tokens":{12 + self._sent}}}',
        )
        return finish + usage + DONE

    def _write(self, data: bytes) -> None:
        """``data`` sent now, right after its stamps were taken: uvloop's ``write`` leaves it
        in the transport until the loop's turn ends, after every other stream's timer of that
        turn (tens of ms on a starved CPU), which a stamp would count as the relay's delay."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not transport.get_write_buffer_size():  # nothing queued ahead of it
            try:
                data = data[os.write(self._fd, data) :]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                transport.close()
                return
            if not data:
                return
        transport.write(data)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip() or 0)
    return 0


async def serve(host: str, port: int, pacing: Pacing) -> None:
    rng = random.Random()
    await serve_protocol(host, port, lambda: SlowStream(pacing, rng))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--min-gap", type=float, default=0.05)
    parser.add_argument("--max-gap", type=float, default=0.1)
    args = parser.parse_args()
    pacing = Pacing(args.min_gap, args.max_gap)
    with contextlib.suppress(KeyboardInterrupt):
        run_loop(serve(args.host, args.port, pacing))


if __name__ == "__main__":
    main()
