"""A body handed through a sink: each read's pieces fed where they are parsed, in order.

The connection is fed its bytes directly, so a test decides what one read of the socket holds:
a piece the sink sends on itself leaves the read waiting (its idle timeout counted from then),
what the sink gives or raises reaches the read, and the body's end in the same read as a piece
comes after it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import httpx
import pytest

from gateway.wire.connection import READ_HIGH_WATER, Connection

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
END = b"0\r\n\r\n"


def synchronous(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def framed(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


class Socket:
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


class Sink:
    """Takes what ``keeps`` says (sent on: b""), hands on the rest; records each call."""

    def __init__(self, keeps: Callable[[bytes], bool] = lambda data: False) -> None:
        self.calls: list[tuple[str, bytes]] = []
        self._keeps = keeps

    def feed(self, data: bytes) -> bytes:
        self.calls.append(("feed", data))
        if data == b"bad":
            raise ValueError("bad")
        return b"" if self._keeps(data) else data

    def end(self) -> bytes:
        self.calls.append(("end", b""))
        return b"<end>"

    def fail(self, error: Exception) -> bytes:
        self.calls.append(("fail", str(error).encode()))
        return b"<failed>"


async def answered(sink: Sink, timeout: float = 5.0) -> tuple[Connection, list[str]]:
    """A connection with its answer's head in, its body handed through ``sink``; the list
    the reader's stop appends to."""
    loop = asyncio.get_running_loop()
    connection = Connection(loop)
    connection.connection_made(Socket())  # type: ignore[arg-type]
    exchange = loop.create_task(connection.exchange(b"POST / HTTP/1.1\r\n\r\n", b"", timeout))
    await asyncio.sleep(0)
    connection.data_received(HEAD)
    await exchange
    stopped: list[str] = []
    connection.pass_through(sink, b"", lambda: lambda: stopped.append("stopped"))
    return connection, stopped


async def read_all(connection: Connection, timeout: float = 5.0) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(await connection.read(timeout))
        except StopAsyncIteration:
            return out


@synchronous
async def test_a_piece_the_sink_sends_on_leaves_the_read_waiting() -> None:
    sink = Sink(keeps=lambda data: data.startswith(b"kept"))
    connection, _ = await answered(sink)
    read = connection.read(5.0)
    connection.data_received(framed(b"kept 1"))
    connection.data_received(framed(b"kept 2"))
    assert not read.done()
    connection.data_received(framed(b"given"))
    assert read.done() and read.result() == b"given"
    assert sink.calls == [("feed", b"kept 1"), ("feed", b"kept 2"), ("feed", b"given")]


@synchronous
async def test_pieces_of_one_read_go_through_the_sink_together() -> None:
    sink = Sink()
    connection, _ = await answered(sink)
    read = connection.read(5.0)
    connection.data_received(framed(b"one ") + framed(b"two"))
    assert read.result() == b"one two"
    assert sink.calls == [("feed", b"one two")]


@synchronous
async def test_the_bodys_end_in_the_same_read_as_a_piece_comes_after_it() -> None:
    sink = Sink(keeps=lambda data: True)
    connection, stopped = await answered(sink)
    read = connection.read(5.0)
    connection.data_received(framed(b"last") + END)
    assert read.result() == b"<end>"
    assert sink.calls == [("feed", b"last"), ("end", b"")]
    assert await read_all(connection) == []
    assert stopped == ["stopped"]


@synchronous
async def test_a_piece_the_sink_refuses_ends_the_body_with_its_failure_bytes() -> None:
    sink = Sink()
    connection, _ = await answered(sink)
    read = connection.read(5.0)
    connection.data_received(framed(b"bad"))
    assert read.result() == b"<failed>"
    assert sink.calls == [("feed", b"bad"), ("fail", b"bad")]


@synchronous
async def test_a_read_the_reader_left_feeds_nothing() -> None:
    sink = Sink()
    connection, _ = await answered(sink)
    read = connection.read(5.0)
    read.cancel()
    connection.data_received(framed(b"later"))
    assert sink.calls == []
    assert await connection.read(5.0) == b"later"  # kept for the next read


@synchronous
async def test_pieces_sent_on_keep_a_read_from_timing_out_each_wait_is_timed_from_the_last() -> (
    None
):
    sink = Sink(keeps=lambda data: data.startswith(b"kept"))
    connection, _ = await answered(sink, timeout=0.2)
    read = connection.read(0.2)
    for n in range(4):  # 0.4 s in all, each within the timeout
        await asyncio.sleep(0.1)
        connection.data_received(framed(b"kept %d" % n))
    assert not read.done()
    await asyncio.sleep(0.3)
    assert read.done() and read.result() == b"<failed>"
    assert sink.calls[-1][0] == "fail"


@synchronous
async def test_a_connection_lost_mid_body_reaches_a_waiting_read_through_the_sink() -> None:
    sink = Sink(keeps=lambda data: True)
    connection, _ = await answered(sink)
    read = connection.read(5.0)
    connection.data_received(framed(b"kept"))
    connection.connection_lost(None)
    assert read.result() == b"<failed>"
    assert sink.calls[0] == ("feed", b"kept")
    assert sink.calls[1][0] == "fail"
    with pytest.raises(StopAsyncIteration):
        await connection.read(5.0)
    assert isinstance(connection._error, httpx.ReadError)


class Pausable(Socket):
    def __init__(self) -> None:
        self.paused = False

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


@synchronous
async def test_body_bytes_past_the_high_water_pause_the_socket_until_the_reader_takes_them() -> (
    None
):
    loop = asyncio.get_running_loop()
    connection = Connection(loop)
    socket = Pausable()
    connection.connection_made(socket)  # type: ignore[arg-type]
    exchange = loop.create_task(connection.exchange(b"GET / HTTP/1.1\r\n\r\n", b"", 5.0))
    await asyncio.sleep(0)
    piece = b"x" * (64 * 1024)
    fill = READ_HIGH_WATER // len(piece)
    connection.data_received(HEAD + framed(piece))  # the first piece with the head
    await exchange
    for _ in range(fill - 1):  # up to the mark exactly, body bytes only (not the framing)
        connection.data_received(framed(piece))
    assert not socket.paused
    connection.data_received(framed(b"y"))
    assert socket.paused
    assert await connection.read(5.0) == piece * fill + b"y"
    assert not socket.paused
