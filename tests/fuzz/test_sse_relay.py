"""Property tests of the SSE relay: however the upstream's bytes are cut, the client gets the
same events and the gateway reads the same usage; long unfinished events are cut off."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.proxy.streaming import SSERelay, StreamResult

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


def relay(pieces: list[bytes], *, wants_usage: bool, max_event: int = 1 << 20):
    results: list[StreamResult] = []

    async def rest():
        for piece in pieces[1:]:
            yield piece

    async def collect() -> bytes:
        relay = SSERelay(
            pieces[0] if pieces else b"",
            rest(),
            httpx.Response(200),
            client_wants_usage=wants_usage,
            on_end=results.append,
            max_event_bytes=max_event,
        )
        return b"".join([part async for part in relay])

    return asyncio.run(collect()), results[0]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in itertools.pairwise(edges)] or [b""]


texts = st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=8)


def stream_of(words: list[str], newline: bytes, usage_only: bool) -> bytes:
    events = [
        b"data: "
        + orjson.dumps({"choices": [{"index": 0, "delta": {"content": word}}], "usage": None})
        for word in words
    ]
    final = {"choices": [] if usage_only else [{"index": 0, "delta": {}}], "usage": USAGE}
    events += [b"data: " + orjson.dumps(final), b"data: [DONE]"]
    return b"".join(event.replace(b"\n", newline) + newline * 2 for event in events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    words=texts,
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
    usage_only=st.booleans(),
    wants_usage=st.booleans(),
    points=st.lists(st.integers(min_value=0, max_value=4096), max_size=30),
)
def test_any_chunking_gives_the_same_events_and_usage(
    words, newline, usage_only, wants_usage, points
):
    data = stream_of(words, newline, usage_only)
    whole, whole_result = relay([data], wants_usage=wants_usage)
    pieces, result = relay(cut(data, points), wants_usage=wants_usage)
    assert pieces == whole
    assert result.usage == whole_result.usage == USAGE
    assert result.events == whole_result.events
    assert result.completed and result.error is None


@settings(max_examples=30, deadline=None)
@given(size=st.integers(min_value=1, max_value=64), limit=st.integers(min_value=100, max_value=400))
def test_an_event_that_never_ends_is_cut_at_the_limit(size, limit):
    pieces = [b"data: " + b"x" * size for _ in range(200)]
    out, result = relay(pieces, wants_usage=False, max_event=limit)
    assert result.error is not None and "byte limit" in result.error.message
    assert out.endswith(b"data: [DONE]\n\n") and b"xxxx" not in out


def test_a_long_unterminated_stream_is_scanned_in_linear_time():
    # 8 MB in 4 KB pieces: rescanning the carry on every piece would copy ~8 GB.
    pieces = [b"data: "] + [b"y" * 4096] * 2000 + [b"\n\ndata: [DONE]\n\n"]
    out, result = relay(pieces, wants_usage=False, max_event=32 * 1024 * 1024)
    assert result.completed and result.events == 1 and len(out) > 8_000_000
