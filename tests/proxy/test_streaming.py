"""The SSE relay on hand-made upstream byte sequences."""

import asyncio

import httpx
import orjson
import pytest

from gateway.proxy.streaming import SSERelay

USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def event(document) -> bytes:
    return b"data: " + orjson.dumps(document) + b"\n\n"


def chunk(text, usage=None, finish=None, with_null_usage=True):
    document = {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
    }
    if usage is not None or with_null_usage:
        document["usage"] = usage
    return event(document)


USAGE_ONLY = event({"object": "chat.completion.chunk", "choices": [], "usage": USAGE})
DONE = b"data: [DONE]\n\n"


def relay(pieces, *, wants_usage, fail_with=None):
    results = []

    async def rest():
        for piece in pieces[1:]:
            yield piece
        if fail_with is not None:
            raise fail_with

    async def collect():
        r = SSERelay(
            pieces[0],
            rest(),
            httpx.Response(200),
            client_wants_usage=wants_usage,
            on_end=results.append,
        )
        return b"".join([part async for part in r])

    out = asyncio.run(collect())
    return out, results[0]


def events_of(out: bytes):
    return [e for e in out.split(b"\n\n") if e]


def test_usage_only_chunk_is_dropped_unless_asked_for_but_always_read():
    pieces = [chunk("Hel"), chunk("lo", finish="stop"), USAGE_ONLY, DONE]
    out, result = relay(pieces, wants_usage=False)
    assert result.usage == USAGE and result.completed and result.error is None
    assert b'"choices":[]' not in out and out.endswith(DONE)
    out, result = relay(pieces, wants_usage=True)
    assert out == b"".join(pieces) and result.usage == USAGE


def test_usage_on_the_finish_chunk_is_read_and_kept():
    pieces = [chunk("Hi", with_null_usage=False), chunk("", usage=USAGE, finish="stop"), DONE]
    out, result = relay(pieces, wants_usage=False)
    assert result.usage == USAGE and out == b"".join(pieces)


def test_events_split_across_chunks_are_reassembled():
    whole = chunk("a") + chunk("b") + USAGE_ONLY + DONE
    pieces = [whole[i : i + 7] for i in range(0, len(whole), 7)]
    out, result = relay(pieces, wants_usage=True)
    assert out == whole and result.usage == USAGE and result.completed


def test_crlf_framing_split_inside_the_crlf_is_handled():
    whole = (chunk("a") + USAGE_ONLY + DONE).replace(b"\n", b"\r\n")
    cut = whole.index(b"\r\n\r\n") + 1  # between CR and LF
    out, result = relay([whole[:cut], whole[cut:]], wants_usage=False)
    assert result.usage == USAGE and result.completed
    assert events_of(out) == [chunk("a").strip(), DONE.strip()]


def test_a_stream_without_done_ends_with_an_in_band_error_then_done():
    out, result = relay([chunk("a"), chunk("b")], wants_usage=False)
    assert result.error is not None and not result.completed
    tail = events_of(out)[-2:]
    assert b'"error"' in tail[0] and tail[1] == b"data: [DONE]"


@pytest.mark.parametrize("failure", [httpx.ReadError("cut"), httpx.ReadTimeout("idle")])
def test_an_upstream_failure_mid_stream_is_reported_in_band(failure):
    out, result = relay([chunk("a"), chunk("b")], wants_usage=False, fail_with=failure)
    error = orjson.loads(events_of(out)[-2][len(b"data: ") :])["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert out.endswith(DONE) and result.error is not None
    assert result.events == 2


def test_fast_path_counts_events():
    pieces = [chunk(str(i), with_null_usage=False) for i in range(5)] + [DONE]
    out, result = relay(pieces, wants_usage=False)
    assert out == b"".join(pieces) and result.events == 5 and result.usage is None


@pytest.mark.parametrize("wants_usage", [True, False])
def test_chunks_with_null_usage_relay_as_they_are_and_the_usage_chunk_is_still_read(wants_usage):
    # OpenAI's streams with include_usage: "usage": null on every chunk, then a usage-only one
    pieces = [chunk(str(i)) for i in range(4)] + [USAGE_ONLY, DONE]
    out, result = relay(pieces, wants_usage=wants_usage)
    kept = pieces if wants_usage else [*pieces[:4], DONE]
    assert out == b"".join(kept)
    assert result.usage == USAGE and result.completed
    assert result.events == (5 if wants_usage else 4)


def test_a_null_usage_then_a_real_one_on_the_same_line_is_read_as_the_general_path_does():
    line = b'data: {"usage":null,"choices":[],"x":{"usage":{"total_tokens":1}}}\n\n'
    out, result = relay([chunk("a"), line, DONE], wants_usage=True)
    assert out == chunk("a") + line + DONE and result.events == 2 and result.usage is None
