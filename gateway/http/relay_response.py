"""A lean streaming response for relays: no task group per stream, prompt disconnect handling.

Starlette's ``StreamingResponse`` runs a task group with a second task per response to watch for
the client leaving (uvicorn speaks ASGI 2.3). Here the gateway's protocol tells the relay
(``client_gone``), or elsewhere one future waits on ``receive()``; when the client is gone, the
streaming task is cancelled at once, which closes the upstream.
A server shutting down cuts an SSE relay still open at the end of its grace period the same
way, then ends it in-band (``stream_cut``).

Served by the gateway's protocol (``send`` its ``GatewayCycle``'s own), the head leaves with the
first chunk, each chunk in one write with its framing, and the last with the body's end when
it is known to be the last without waiting (``lookahead``). Elsewhere: ASGI messages.

A relay over the gateway's own transport (a ``BodyReader``) has its chunks after the first
written where the upstream connection parses them (``push``), while the task waits on its read:
no task wakes per chunk. What the relay does not offer to ``push`` (one that ends the stream:
the lookahead, the body's end, a failure) or ``push`` declines (a chunk while the client's
transport is paused: the task drains it, and the upstream stops being read once its buffer is
full) wakes the task as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Mapping

from starlette.types import Message, Receive, Scope, Send

from gateway.http.client_gone import watch
from gateway.http.cycle import GatewayCycle
from gateway.http.lookahead import next_or_flush
from gateway.http.stream_cut import STATE_KEY, OpenRelays
from gateway.proxy.streaming import LAST_EVENT
from gateway.wire.transport import BodyReader


class RelayResponse:
    """An ASGI response whose body is an async iterable, sent as it comes (an ASGI app of its
    own: it needs nothing of Starlette's ``Response``)."""

    def __init__(
        self,
        body: AsyncIterable[bytes],
        *,
        status_code: int = 200,
        headers: Mapping[str, str],
        media_type: str | None = None,
    ) -> None:
        self.body_iterator = body
        self.status_code = status_code
        fields = [(k.lower(), v) for k, v in headers.items()]
        if media_type is not None and "content-type" not in headers:
            fields.append(("content-type", media_type))
        self.fields = fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        state = {"streaming": True, "client_left": False, "body_done": False, "started": False}
        tail: list[bytes] = []  # what ends the body in-band once the server cut it

        # A body that can end itself in-band (an SSE relay) is cut by a server shutting down.
        cut_body: Callable[[], bytes] | None = getattr(self.body_iterator, "server_cut", None)
        relays: OpenRelays | None = None
        if cut_body is not None:
            relays = scope.get("state", {}).get(STATE_KEY)

        def server_cut() -> None:
            if state["streaming"] and not state["client_left"] and cut_body is not None:
                tail.append(cut_body())
                task.cancel()

        if relays is not None:
            relays.add(server_cut)

        def on_message(waiter: asyncio.Future[Message]) -> None:
            if waiter.cancelled() or waiter.exception() is not None:
                return
            if state["streaming"] and waiter.result()["type"] == "http.disconnect":
                state["client_left"] = True
                task.cancel()

        def gone() -> None:
            if state["streaming"]:
                state["client_left"] = True
                task.cancel()

        stop_watching: Callable[[], object] | None = watch(send, receive, gone)
        if stop_watching is None:
            waiter = asyncio.ensure_future(receive())
            waiter.add_done_callback(on_message)
            stop_watching = waiter.cancel
        # Iterate before sending headers: the relay's own clean-up (closing the upstream,
        # metering) then runs even when the client is gone before the first byte.
        chunks = aiter(self.body_iterator)
        cycle = getattr(send, "__self__", None)
        try:
            if isinstance(cycle, GatewayCycle) and cycle.takes(self.status_code):
                await self._write(cycle, chunks, state)
            else:
                await self._send(send, chunks, state)
        except asyncio.CancelledError:
            if state["client_left"]:
                task.uncancel()  # our own cancel: the client is gone, the response is over
            elif tail:
                task.uncancel()  # the server's cut at shutdown: end the stream in-band
                state["streaming"] = False
                tail_bytes = b"" if state["body_done"] else tail[0]
                await self._end_in_band(send, tail_bytes, state["started"])
            else:
                raise
        finally:
            state["streaming"] = False
            stop_watching()
            if relays is not None:
                relays.discard(server_cut)
            if isinstance(chunks, AsyncGenerator):
                await chunks.aclose()

    async def _send(self, send: Send, chunks: AsyncIterator[bytes], state: dict[str, bool]) -> None:
        """The body as ASGI messages, each chunk sent as it comes."""
        async for chunk in chunks:
            if not state["started"]:
                await send(self._start())
                state["started"] = True
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        state["body_done"] = True
        if not state["started"]:
            await send(self._start())
            state["started"] = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(
        self, cycle: GatewayCycle, chunks: AsyncIterator[bytes], state: dict[str, bool]
    ) -> None:
        """The body written by the cycle, each chunk as it comes (the first with the head). A
        chunk that probably ends the body waits for the next one or the end only if that is
        there without waiting (``next_or_flush``): that costs more per chunk than the write
        it saves, so it is done for those chunks only."""
        flow = cycle.flow
        chunk: bytes | None = None  # in hand, not yet written
        push_to = chunks.push_to if isinstance(chunks, BodyReader) else None
        push: Callable[[bytes], bool] | None = None  # the cycle's, once the head is out

        def write(data: bytes, more_body: bool) -> None:
            nonlocal push
            if state["started"]:
                cycle.write_body(data, more_body)
            else:
                state["started"] = True
                cycle.write_start(self.status_code, self.fields, data, more_body=more_body)
                if push_to is not None:  # the head is out: how chunks are written is known
                    push = cycle.chunk_pusher()
                    push_to(push)

        def hold(held: bool) -> None:
            """Pushing off (or back on): a chunk is pushed only while a read waits, and the
            read made with a chunk in hand (the lookahead) must not push one past it."""
            if push is not None:
                assert push_to is not None
                push_to(None if held else push)

        def flush() -> None:  # the next chunk is not there yet: the one in hand goes now
            nonlocal chunk
            if chunk is not None:
                write(chunk, True)
                chunk = None

        while True:
            if flow.write_paused and not cycle.disconnected:
                await flow.drain()  # as uvicorn's send, before each write
            try:
                if chunk is None:
                    following = await anext(chunks)
                elif chunk.endswith(LAST_EVENT):
                    hold(True)
                    try:
                        following = await next_or_flush(chunks, flush)
                    finally:
                        hold(False)
                else:
                    write(chunk, True)
                    chunk = None
                    following = await anext(chunks)
            except StopAsyncIteration:
                state["body_done"] = True
                if chunk is None and state["started"] and flow.write_paused:
                    await cycle.drain()
                write(chunk or b"", False)
                return
            if chunk is not None:  # the next one came at once: this one goes now
                write(chunk, True)
            chunk = following

    async def _end_in_band(self, send: Send, tail: bytes, started: bool) -> None:
        if not started:
            await send(self._start())
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    def _start(self) -> Message:
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self.fields]
        return {"type": "http.response.start", "status": self.status_code, "headers": headers}
