"""One HTTP/1.1 connection to an upstream: an asyncio protocol with httptools' response parser.

The gateway only needs request → status, headers, body chunks as they arrive. Doing that on
the event loop's protocol callbacks (no streams, no per-chunk tasks) is what makes this cheaper
than a general-purpose client. A body read is a future the protocol resolves as bytes arrive; a
relay can hand the connection a ``Sink`` that turns the bytes into what it sends on, run right
where they are parsed, so that its reader awaits the future directly and no coroutine of ours
wakes per chunk; a sink that sends them on itself from there (a relay's push) hands nothing
over, and the read keeps waiting, so that no task wakes per chunk either. One exchange at a
time; the pool hands the connection out again once a response was read to its end.

The upstream is not trusted: its response head is checked and capped as it is parsed
(``ResponseHead``), so are trailers and chunk framing that carry no body, and anything after
the response's end spoils the connection instead of reaching the body or a later request.

Over 400 lines: one connection is one concept (its parser, its waits, its body's hand-out),
and splitting it further would have two classes share its private state.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, NoReturn, Protocol, cast

import httptools
import httpx

from gateway.wire.response_head import (
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    HeaderLimitExceeded,
    ResponseHead,
    StopParsing,
)

READ_HIGH_WATER = 256 * 1024  # buffered body bytes before the socket stops being read


class ClosedBeforeSend(httpx.RemoteProtocolError):
    """The connection was found closed before any byte of the request was written."""


class Sink(Protocol):
    """What a relayed body passes through as it is parsed (on the protocol's callbacks)."""

    def feed(self, data: bytes) -> bytes:
        """What to hand on of ``data``: b"" for nothing (nothing complete yet, or the sink sent
        it on itself); raising ends the body."""

    def end(self) -> bytes:
        """The last bytes to hand on once the body ended."""

    def fail(self, error: Exception) -> bytes:
        """The last bytes after ``error`` (the upstream's, or what ``feed`` raised); raising
        passes the error on to the reader instead."""


class Connection(asyncio.Protocol):
    """Owns one socket. ``exchange`` sends a request and waits for its head; ``read`` hands
    out the body as it arrives. Failures are raised as httpx's transport errors."""

    # Slots: its methods and fields are looked up once per chunk of a stream, which a dict of
    # this many keys leaves unspecialised
    __slots__ = (
        "_buffered",
        "_chunks",
        "_deadline",
        "_drained",
        "_error",
        "_keep_alive",
        "_loop",
        "_no_body",
        "_on_stop",
        "_parser",
        "_read_timeout",
        "_reader",
        "_reading_paused",
        "_sink",
        "_sink_over",
        "_spare",
        "_stalled",
        "_timer",
        "_timer_at",
        "_transport",
        "_waiter",
        "_writing_paused",
        "body_done",
        "closed",
        "head",
        "idle_since",
        "on_header",
        "on_lost",
        "received_any",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_headers: int = MAX_HEADERS,
    ) -> None:
        self._loop = loop
        self.head = ResponseHead(max_header_bytes, max_headers)
        self.on_header = self.head.on_header  # the parser calls the head's checks directly
        self._transport: asyncio.Transport | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._spare: httptools.HttpResponseParser | None = None  # ended at a message's end
        self._waiter: asyncio.Future[None] | None = None
        self._reader: asyncio.Future[bytes] | None = None  # a body read waiting for bytes
        self._read_timeout: float | None = None
        self._sink: Sink | None = None
        # the sink's reader, weakly (it is closed when dropped): it read past the end
        self._on_stop: Callable[[], Callable[[], None] | None] | None = None
        self._sink_over = False  # the sink's last bytes were handed out
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._error: httpx.TransportError | None = None
        self.body_done = False
        self.received_any = False
        self.closed = False
        self.idle_since = 0.0
        self.on_lost: Callable[[Connection], None] | None = None  # the pool's bookkeeping
        self._keep_alive = False
        self._no_body = False  # the request was HEAD
        self._stalled = 0  # bytes fed since the last body byte (trailers, chunk framing)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline = 0.0

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # bytes while idle: the connection cannot be trusted again
            self.received_any = True
            self._fail(httpx.RemoteProtocolError("Upstream sent data without a request"))
            self.close()
            return
        head = self.head
        try:
            if head.done:
                buffered = self._buffered  # only on_body changes it while feeding
                parser.feed_data(data)
                if self._buffered == buffered:
                    self._count_stalled(len(data))
                elif self._stalled:
                    self._stalled = 0
            else:  # (once the head is done, bytes came: ``received_any`` stays set)
                self.received_any = True
                head.feed(parser, data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade, StopParsing) as exc:
            if head.refused is not None:
                self._fail(head.refused)
            if not self.body_done:  # after the end it spoils the connection, not the answer
                self._fail(httpx.RemoteProtocolError(f"Malformed upstream response: {exc}"))
            self.close()
        reader = self._reader
        if reader is None:
            return
        chunks, sink = self._chunks, self._sink
        if (
            sink is None
            or len(chunks) != 1
            or self._sink_over
            or self._reading_paused
            or reader.done()
        ):
            self._deliver()  # all of this read's pieces at once, not one by one
            return
        # A relay's one new piece, as ``_deliver`` hands it (inlined: once per chunk)
        self._buffered = 0
        try:
            out = sink.feed(chunks.popleft())
        except Exception as exc:
            self._reader = None
            self._give_up(reader, exc)
            return
        if out:
            self._reader = None
            reader.set_result(out)
        elif self.body_done or self._error is not None or self.closed:
            self._deliver()  # nothing left to feed: the end, or the failure
        elif timeout := self._read_timeout:  # waiting again, from now
            self._deadline = self._loop.time() + timeout
            if self._timer is None:
                self._arm(timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self.on_lost is not None:
            self.on_lost(self)
        head = self.head
        if head.done and not self.body_done and not head.framed and exc is None:
            self.body_done = True  # a body delimited by the connection closing
            self._wake()
            self._deliver()
            return
        if self._parser is not None and not self.body_done:
            message = "Upstream closed the connection before the response was complete"
            if not head.done:
                self._fail(httpx.RemoteProtocolError(message))
            else:
                self._fail(httpx.ReadError(message))
        self._wake_drain()
        self._deliver()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain()

    # --- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.head.done:  # a second response behind the first: never part of this one
            raise StopParsing("data after the end of the response")

    # on_header: the head's own (``ResponseHead.on_header``), set in ``__init__``

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        if not self.head.complete(self._parser.get_status_code()):
            return  # an interim head: wait for the real one
        if self._no_body:  # HEAD: no body follows whatever the head says; stop reading here
            self.body_done = True
            self._keep_alive = False
            self._wake()
            raise StopParsing("end of a HEAD response")
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        buffered = self._buffered = self._buffered + len(body)
        if buffered > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            assert self._transport is not None
            self._transport.pause_reading()

    def on_message_complete(self) -> None:
        if not self.head.done:
            return
        assert self._parser is not None
        self._keep_alive = self._parser.should_keep_alive()  # the parser forgets it afterwards
        self.body_done = True
        self._wake()

    # --- used by the transport ----------------------------------------------------------

    async def exchange(
        self, head: bytes, body: bytes, timeout: float | None, no_body: bool = False
    ) -> None:
        """Write the request (``head`` + ``body`` in one write) and wait for the response head
        (``no_body``: the request was HEAD, so the response has a head only)."""
        await self.send(head, body, timeout, no_body)
        await self.until_head(timeout)

    def send(
        self, head: bytes, body: bytes, timeout: float | None, no_body: bool = False
    ) -> asyncio.Future[None]:
        """``exchange`` without its coroutine: the request written, the future the head (or a
        failure, or the timeout) resolves; then ``until_head`` unless ``head.done``."""
        self._start(no_body)
        assert self._transport is not None
        self._transport.write(head + body if body else head)
        return self._waiter_for(timeout)

    async def exchange_streaming(
        self, head: bytes, body: Any, chunked: bool, timeout: float | None, no_body: bool = False
    ) -> None:
        """Like ``exchange`` for a body that arrives in pieces (multipart uploads)."""
        self._start(no_body)
        assert self._transport is not None
        self._transport.write(head)
        async for piece in body:
            if piece:
                self._transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
            if self._writing_paused:
                await self._drain(timeout)
            if self._error is not None:
                raise self._error
        if chunked:
            self._transport.write(b"0\r\n\r\n")
        await self.until_head(timeout)

    def read(self, timeout: float | None) -> asyncio.Future[bytes]:
        """The body's next bytes: everything received so far (through the sink, if any), as
        a future, done at once when bytes are waiting; ``StopAsyncIteration`` at the end, so
        that this can be an iterator's ``__anext__`` itself.

        Pieces that queued up while the reader was busy go out together: a relay that falls
        behind then spends one write, not one per piece, and catches up."""
        reader = self._reader = self._loop.create_future()
        if self._chunks or self.body_done or self.closed or self._error or self._sink_over:
            self._deliver()
            if reader.done():
                return reader
        self._read_timeout = timeout
        if timeout:  # ``_arm`` inlined: once per chunk
            deadline = self._deadline = self._loop.time() + timeout
            if self._timer is None or self._timer_at > deadline:
                self._arm(timeout)
        else:
            self._disarm()  # a timer left by an earlier wait must not end this one
        return reader

    def received_body(self) -> bytes | None:
        """The whole body when all of it is in and no sink takes it (a JSON answer most often
        comes with its head), taken at once; None while more is to come (``read`` it)."""
        if not self.body_done or self._sink is not None:
            return None
        chunks = self._chunks
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()
        return data

    def pass_through(
        self, sink: Sink, first: bytes, on_stop: Callable[[], Callable[[], None] | None]
    ) -> None:
        """Hand the rest of the body (after ``first``, already read) through ``sink``: its
        failures, the idle timeout included, end it with the sink's last bytes. When the
        reader asks past those, what ``on_stop()`` gives (a weak method) runs, and the read
        ends the iteration."""
        self._sink, self._on_stop = sink, on_stop
        if first:
            self._chunks.appendleft(first)
            self._buffered += len(first)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this connection runs on."""
        return self._loop

    @property
    def reusable(self) -> bool:
        """The whole answer was read and both sides agree to keep the connection open."""
        return self.body_done and self._keep_alive and not self.closed and self._error is None

    def finish(self) -> bool:
        """The exchange is over; forget it so stray bytes while idle are noticed. Returns
        ``reusable`` as it stood before it."""
        reusable = self.body_done and self._keep_alive and not self.closed and self._error is None
        self._spare, self._parser = (self._parser if reusable else None), None
        self._chunks.clear()
        self._reader = self._sink = self._on_stop = None
        return reusable

    def close(self) -> None:
        self.closed = True
        self._disarm()
        if self._transport is not None:
            self._transport.close()

    # --- internals ----------------------------------------------------------------------

    def _start(self, no_body: bool) -> None:
        if self.closed:
            raise ClosedBeforeSend("Upstream connection closed before the request was sent")
        self._parser, self._spare = self._spare or httptools.HttpResponseParser(self), None
        self._error = None
        self.head.begin()
        self.body_done = self.received_any = self._keep_alive = False
        self._no_body, self._sink_over = no_body, False
        self._stalled = 0
        self._reader = self._sink = self._on_stop = None

    def _count_stalled(self, size: int) -> None:
        """Bytes that carried no body (trailers, chunk framing) are capped like the head."""
        self._stalled += size
        cap = self.head.max_bytes
        if self._stalled > cap and not self.body_done:
            self._stop(
                HeaderLimitExceeded(
                    f"Upstream sent more than {cap} bytes of trailers or chunk "
                    "framing without any body (max_header_bytes)"
                )
            )

    def _stop(self, error: httpx.TransportError) -> NoReturn:
        self._fail(error)
        raise StopParsing(str(error))

    async def until_head(self, timeout: float | None) -> None:
        while not self.head.done:
            waiter = self._waiter_for(timeout)
            try:
                await waiter
            finally:
                self._waiter = None

    def _waiter_for(self, timeout: float | None) -> asyncio.Future[None]:
        """The future the next event resolves (bytes, the end, a failure, the timeout);
        raises instead when the exchange already failed or the connection is gone."""
        if self._error is not None:
            raise self._error
        if self.closed and not self.body_done:
            raise httpx.ReadError("Upstream connection closed")
        waiter = self._waiter = self._loop.create_future()
        if timeout:
            self._arm(timeout)
        else:
            self._disarm()  # a timer left by an earlier wait must not end this one
        return waiter

    def _arm(self, timeout: float) -> None:
        """Fail the wait that starts now if nothing arrives within ``timeout``.

        One timer per connection is kept and moved lazily (it re-arms itself when it fires
        early) instead of one timer per wait: a stream waits once per chunk. A deadline
        earlier than the timer's (a shorter timeout than the last request's) replaces it."""
        deadline = self._deadline = self._loop.time() + timeout
        if self._timer is None or self._timer_at > deadline:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = self._loop.call_at(deadline, self._on_deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_deadline(self) -> None:
        self._timer = None
        waiter, reader = self._waiter, self._reader
        waiting = waiter is not None and not waiter.done()
        if not waiting and (reader is None or reader.done()):
            return
        if self._loop.time() < self._deadline:
            self._timer_at = self._deadline
            self._timer = self._loop.call_at(self._deadline, self._on_deadline)
            return
        timeout = httpx.ReadTimeout("Timed out waiting for the upstream")
        if waiting:
            assert waiter is not None
            waiter.set_exception(timeout)
        elif reader is not None:
            self._reader = None
            self._give_up(reader, timeout)

    async def _drain(self, timeout: float | None) -> None:
        drained = self._drained = self._loop.create_future()
        try:
            await asyncio.wait_for(drained, timeout)
        except TimeoutError:
            raise httpx.WriteTimeout("Timed out sending the request upstream") from None
        finally:
            self._drained = None

    def _fail(self, error: httpx.TransportError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _deliver(self) -> None:
        """Resolve the waiting read with what there is: body bytes (through the sink), else
        the end or the failure; with nothing yet it keeps waiting."""
        reader = self._reader
        if reader is None:
            return
        self._reader = None  # resolved below, or put back to wait on
        if reader.done():  # cancelled: the reader left
            return
        if self._sink_over:  # whatever came after the sink's last bytes is not handed on
            self._end_read(reader)
            return
        sink = self._sink
        chunks = self._chunks
        if chunks:
            data = chunks.popleft()
            if chunks:  # more pieces: all at once (as ``received_body``, inlined: per chunk)
                chunks.appendleft(data)
                data = b"".join(chunks)
                chunks.clear()
            self._buffered = 0
            if self._reading_paused:
                self._reading_paused = False
                assert self._transport is not None
                self._transport.resume_reading()
            if sink is None:
                reader.set_result(data)
                return
            try:
                out = sink.feed(data)
            except Exception as exc:
                self._give_up(reader, exc)
                return
            if out:
                reader.set_result(out)
                return
            timeout = self._read_timeout
            if timeout:  # waiting again, from now (``_arm`` inlined: its deadline is later)
                self._deadline = self._loop.time() + timeout
                if self._timer is None:
                    self._arm(timeout)
        if self.body_done:
            if sink is None:
                reader.set_exception(StopAsyncIteration())
            else:
                self._hand_last(reader, sink.end)
        elif self._error is not None or self.closed:
            self._give_up(reader, self._error or httpx.ReadError("Upstream connection closed"))
        else:
            self._reader = reader

    def _give_up(self, reader: asyncio.Future[bytes], error: Exception) -> None:
        sink = self._sink
        if sink is None:
            reader.set_exception(error)
        else:
            self._hand_last(reader, lambda: sink.fail(error))

    def _hand_last(self, reader: asyncio.Future[bytes], last: Callable[[], bytes]) -> None:
        """The sink's last bytes; a read after them (or instead, when there are none) stops."""
        self._sink_over = True
        try:
            out = last()
        except Exception as exc:
            reader.set_exception(exc)
            return
        if out:
            reader.set_result(out)
        else:
            self._end_read(reader)

    def _end_read(self, reader: asyncio.Future[bytes]) -> None:
        on_stop, self._on_stop = self._on_stop, None
        try:
            finish = on_stop() if on_stop is not None else None
            if finish is not None:
                finish()
        except Exception as exc:  # what ending the relay raised goes to its reader
            reader.set_exception(exc)
            return
        reader.set_exception(StopAsyncIteration())
