"""The SSE relay over the gateway's own transport, where each chunk is scanned as the
connection parses it: the same bytes and results as the relay over any body, and the ends a
stream can come to (cut, stalled, left by its reader, dropped unclosed), against a real
socket upstream."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import pytest

from gateway.proxy.streaming import CUT, IDLE_TIMEOUT, SSERelay, StreamResult
from gateway.wire import NativeTransport
from gateway.wire.transport import BodyReader
from tests.hostile_upstream import HostileUpstream, head

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
MB = 1024 * 1024


def event(document: object) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"


def content(text: str) -> bytes:
    return event({"object": "chat.completion.chunk", "choices": [{"delta": {"content": text}}]})


USAGE_ONLY = event({"object": "chat.completion.chunk", "choices": [], "usage": USAGE})
DONE = b"data: [DONE]\n\n"
WHOLE = content("Hel") + content("lo") + USAGE_ONLY + DONE


def framed(payload: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(payload), payload)


def stream_of(
    *writes: bytes, end: str = "apart", stall: float = 0.0
) -> Callable[[], AsyncIterator[bytes]]:
    """A chunked event stream, one socket write per item (a gap between writes, so that
    each reaches the gateway on its own); the body's end comes in a write of its own
    (``apart``), with the last item (``with-last``) or not at all (``none``)."""

    async def script() -> AsyncIterator[bytes]:
        yield head(content_type="text/event-stream", transfer_encoding="chunked")
        for number, write in enumerate(writes, 1):
            await asyncio.sleep(0.005)
            last = number == len(writes) and end == "with-last"
            yield framed(write) + (b"0\r\n\r\n" if last else b"")
        if stall:
            await asyncio.sleep(stall)
        if end == "apart":
            await asyncio.sleep(0.005)
            yield b"0\r\n\r\n"

    return script


async def endless() -> AsyncIterator[bytes]:
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    piece = framed(content("x" * 4000) * 16)
    for _ in range(64 * MB // len(piece)):
        yield piece


async def trickle() -> AsyncIterator[bytes]:
    """One event in pieces, each within the idle timeout (1 s), all of them past it."""
    yield head(content_type="text/event-stream", transfer_encoding="chunked")
    for piece in (b"data: ", b'{"choices":[]', b',"usage":', orjson.dumps(USAGE), b"}\n\n"):
        await asyncio.sleep(0.4)
        yield framed(piece)
    yield framed(DONE) + b"0\r\n\r\n"


SCRIPTS = {
    # the body's end apart from the last event: it comes when the reader waits, with no bytes
    "whole": stream_of(content("Hel"), content("lo"), USAGE_ONLY + DONE),
    "end-with-last": stream_of(content("Hel"), content("lo") + USAGE_ONLY, DONE, end="with-last"),
    "pieces": stream_of(*[WHOLE[i : i + 7] for i in range(0, len(WHOLE), 7)]),
    "crlf": stream_of(
        *(lambda b: [b[i : i + 5] for i in range(0, len(b), 5)])(WHOLE.replace(b"\n", b"\r\n"))
    ),
    "cut": stream_of(content("Hel"), content("lo"), end="none"),
    "stalled": stream_of(content("Hel"), stall=3.0),
    "huge-event": stream_of(content("Hel"), b"data: " + b"x" * (70 * 1024)),
    "endless": endless,
    "trickle": trickle,
}


@pytest.fixture(scope="module")
def upstream():
    with HostileUpstream(SCRIPTS).running() as server:
        yield server


async def open_relay(
    upstream: HostileUpstream, model: str, wants_usage: bool, ended: list[StreamResult]
) -> tuple[SSERelay, NativeTransport]:
    transport = NativeTransport()
    request = httpx.Request(
        "POST",
        upstream.base_url + "/chat/completions",
        content=orjson.dumps({"model": model}),
        extensions={"timeout": {"connect": 5, "read": 1.0, "write": 5, "pool": 5}},
    )
    response = await transport.handle_async_request(request)
    rest = aiter(response.stream)  # type: ignore[arg-type]
    assert isinstance(rest, BodyReader)
    first = await anext(rest, b"")
    relay = SSERelay(
        first,
        rest,
        response,
        client_wants_usage=wants_usage,
        on_end=ended.append,
        max_event_bytes=64 * 1024,
    )
    return relay, transport


def relayed(upstream: HostileUpstream, model: str, wants_usage: bool) -> tuple[bytes, StreamResult]:
    ended: list[StreamResult] = []

    async def run() -> bytes:
        relay, transport = await open_relay(upstream, model, wants_usage, ended)
        chunks = aiter(relay)
        assert isinstance(chunks, BodyReader)  # the pass-through, not the generic relay
        out = b"".join([chunk async for chunk in chunks])
        await transport.aclose()
        return out

    out = asyncio.run(run())
    assert len(ended) == 1
    return out, ended[0]


def generic(pieces: list[bytes], wants_usage: bool) -> tuple[bytes, StreamResult]:
    """The same bytes through the relay over a plain async iterator."""
    ended: list[StreamResult] = []

    async def rest() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    async def run() -> bytes:
        relay = SSERelay(
            b"", rest(), httpx.Response(200), client_wants_usage=wants_usage, on_end=ended.append
        )
        return b"".join([chunk async for chunk in relay])

    return asyncio.run(run()), ended[0]


def events(out: bytes) -> list[bytes]:
    return [e for e in out.split(b"\n\n") if e]


@pytest.mark.parametrize("model", ["whole", "end-with-last", "pieces", "crlf"])
@pytest.mark.parametrize("wants_usage", [False, True])
def test_a_stream_relays_as_the_relay_over_any_body_does(upstream, model, wants_usage):
    out, result = relayed(upstream, model, wants_usage)
    expected, reference = generic([WHOLE], wants_usage)
    assert events(out) == events(expected)
    assert (b'"choices":[]' in out) == wants_usage  # the usage-only chunk dropped unless asked
    assert result.usage == USAGE and result.completed and result.error is None
    assert result.events == reference.events == (3 if wants_usage else 2)
    assert not result.client_gone and result.upstream_cut is None
    assert result.bytes_out == len(out)
    assert 0 < result.first_chunk_at <= result.last_chunk_at


def test_a_stream_cut_mid_way_ends_with_an_in_band_error(upstream):
    out, result = relayed(upstream, "cut", wants_usage=False)
    assert events(out)[:2] == [content("Hel").rstrip(), content("lo").rstrip()]
    assert b"lost mid-stream" in events(out)[-2] and events(out)[-1] == b"data: [DONE]"
    assert result.upstream_cut == CUT and result.error is not None
    assert not result.completed and not result.client_gone


def test_a_stalled_stream_ends_at_the_idle_timeout(upstream):
    out, result = relayed(upstream, "stalled", wants_usage=False)
    assert events(out)[0] == content("Hel").rstrip()
    assert b"idle timeout" in out and out.endswith(DONE)
    assert result.upstream_cut == IDLE_TIMEOUT and not result.client_gone


def test_an_event_past_the_limit_ends_the_stream_in_band(upstream):
    out, result = relayed(upstream, "huge-event", wants_usage=False)
    assert b"byte limit" in out and out.endswith(DONE)
    assert result.error is not None and result.upstream_cut is None


def test_a_reader_that_leaves_closes_the_upstream_and_is_counted_gone(upstream):
    ended: list[StreamResult] = []

    async def run() -> None:
        relay, transport = await open_relay(upstream, "endless", False, ended)
        chunks = aiter(relay)
        assert isinstance(chunks, BodyReader)
        await anext(chunks)
        await chunks.aclose()
        assert len(ended) == 1  # ended at once, not when the upstream is done
        await chunks.aclose()  # once
        await transport.aclose()

    asyncio.run(run())
    assert len(ended) == 1 and ended[0].client_gone and not ended[0].completed
    assert upstream.bytes_sent["endless"] < 40 * MB  # it stopped reading


def test_a_slow_reader_holds_the_upstream_back(upstream):
    ended: list[StreamResult] = []

    async def run() -> int:
        relay, transport = await open_relay(upstream, "endless", False, ended)
        chunks = aiter(relay)
        await anext(chunks)
        for _ in range(50):  # the reader busy elsewhere while the upstream keeps sending
            await asyncio.sleep(0.01)
        sent = upstream.bytes_sent["endless"]
        await chunks.aclose()  # type: ignore[attr-defined]
        await transport.aclose()
        return sent

    assert asyncio.run(run()) < 40 * MB  # reads paused; the socket buffers hold the rest
    assert ended[0].client_gone


def test_a_reader_dropped_unclosed_still_ends_the_relay(upstream):
    ended: list[StreamResult] = []

    async def run() -> None:
        relay, transport = await open_relay(upstream, "endless", False, ended)
        chunks = aiter(relay)
        await anext(chunks)
        del chunks, relay
        gc.collect()
        for _ in range(3):  # its end is run on the loop, as an async generator's would be
            await asyncio.sleep(0)
        assert len(ended) == 1
        await transport.aclose()

    asyncio.run(run())
    assert ended[0].client_gone


def test_bytes_of_an_event_not_yet_whole_keep_the_stream_alive(upstream):
    out, result = relayed(upstream, "trickle", wants_usage=True)
    assert result.upstream_cut is None and result.completed and result.usage == USAGE
    assert out.endswith(DONE) and b"idle timeout" not in out
