"""Cached answers assembled from an event stream and replayed as one (pure functions)."""

import orjson

from gateway.proxy.cache.entry import Entry, assemble, cacheable_json, replay_events


def sse(*chunks):
    return b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def chunk(delta, finish=None, index=0):
    return {**BASE, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}


def test_tool_calls_and_two_choices_survive_assembly_and_replay():
    call = {"index": 0, "id": "t1", "type": "function", "function": {"name": "f", "arguments": ""}}
    stream = sse(
        chunk({"role": "assistant", "content": "He"}),
        chunk({"content": "llo"}),
        chunk({"role": "assistant", "content": "B"}, index=1),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk({}, "tool_calls"),
        chunk({}, "stop", index=1),
    )
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    whole = orjson.loads(assemble(stream, usage))
    first, second = whole["choices"]
    assert first["message"]["content"] == "Hello" and first["finish_reason"] == "tool_calls"
    assert first["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert second["message"]["content"] == "B" and whole["usage"] == usage
    replayed = replay_events(orjson.dumps(whole), wants_usage=True)
    again = orjson.loads(assemble(replayed, usage))
    assert again == whole
    assert replayed.endswith(b"data: [DONE]\n\n") and b'"choices":[],"usage"' in replayed
    assert b'"usage"' not in replay_events(orjson.dumps(whole), wants_usage=False)


def test_error_events_and_logprobs_are_not_stored():
    error = sse(chunk({"content": "x"}), {"error": {"message": "boom"}})
    assert assemble(error, None) is None
    logprobs = {**BASE, "choices": [{"index": 0, "delta": {"content": "x"}, "logprobs": {}}]}
    assert assemble(sse(logprobs), None) is None
    assert cacheable_json(b'{"error": {"message": "no"}}') is None
    assert cacheable_json(b"[1]") is None


def test_entries_round_trip_and_refuse_foreign_bytes():
    entry = Entry(10.0, 60, "ok", b'{"object": "chat.completion"}')
    assert Entry.decode(entry.encode()) == entry
    assert entry.fresh(69.0) and not entry.fresh(70.0)
    assert Entry.decode(b"something else") is None
