"""The relay's scan of a run of complete events (``SSERelay._scan_events``) gives what a plain
event-by-event reading gives: the same bytes out and the same counts, blank runs included."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from gateway.proxy.streaming import DONE, SSERelay

EVENTS = [
    b'data: {"id":"c","choices":[{"delta":{"content":"hi"}}]}',
    b'data: {"id":"c","choices":[{"delta":{"content":"x"}}],"usage":null}',
    b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5}}',
    b'data: {"id":"c","choices":[{"delta":{}}],"usage":{"prompt_tokens":3,"completion_tokens":5}}',
    b'data: {"error":{"message":"boom"}}',
    b'data:{"error":{"message":"boom"}}',
    b'data:   {"error":{"message":"boom"}}',
    DONE,
    b": ping",
    b'event: x\ndata: {"a":1}',
    b'data: {"a":\ndata: "usage"}',
    b'data: {"text":"the \\"error\\" word"}',
    b'data: {"text":"says \\"usage\\" here"}',
    b'data: {"usage":{"prompt_tokens":1}}',
    b"data: {",
    b'data: {"error"',
    b"id: 5",
]


def reference(complete: bytes, wants_usage: bool) -> tuple[bytes, tuple[Any, ...]]:
    """Each event on its own: [DONE] completes, an error event is flagged, a usage-only event
    is dropped unless asked for; the rest is counted and relayed."""
    kept, events, usage, completed, error = [], 0, None, False, False
    for raw in complete.split(b"\n\n"):
        event = raw.lstrip(b"\n")
        if not event:
            continue
        if event.startswith(DONE):
            completed = True
            kept.append(event)
            continue
        if event.startswith(b"data:") and event[5:].lstrip(b" ").startswith(b'{"error"'):
            error = True
        elif b'"usage"' in event:
            payload = b"\n".join(
                line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")
            )
            try:
                document = orjson.loads(payload)
            except orjson.JSONDecodeError:
                document = None
            found = document.get("usage") if isinstance(document, dict) else None
            if isinstance(found, dict):
                usage = found
                if not document.get("choices") and not wants_usage:
                    continue
        events += 1
        kept.append(event)
    out = b"\n\n".join(kept) + b"\n\n" if kept else b""
    return out, (events, len(out), usage, completed, error)


@pytest.mark.parametrize("wants_usage", [False, True])
def test_runs_of_events_scan_as_one_by_one(wants_usage: bool) -> None:
    rng = random.Random(25)
    for _ in range(3000):
        count = rng.randint(1, 8)
        separators = [b"\n\n"] * 6 + [b"\n\n\n", b"\n\n\n\n"]
        body = rng.choice([b"", b"", b"\n"]) + b"".join(
            rng.choice(EVENTS) + rng.choice(separators) for _ in range(count)
        )
        relay = SSERelay(b"", None, None, client_wants_usage=wants_usage, on_end=print)  # type: ignore[arg-type]
        out = relay._scan_events(body)
        result = relay.result
        got = (result.events, result.bytes_out, result.usage, result.completed)
        expected_out, expected = reference(body, wants_usage)
        assert (out, (*got, result.upstream_error)) == (expected_out, expected), body
