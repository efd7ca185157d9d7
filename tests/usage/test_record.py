"""The typed usage record: settled, stored, read back and exported without changing a byte."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import orjson

from gateway.config.model import Config, Price
from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import decode, encode
from gateway.metering.record_ids import RecordIds
from gateway.metering.settle import settlement
from gateway.metering.types import Admission
from gateway.usage.export import COLUMNS, by_tag, to_csv, to_json, with_tag
from tests.metering.helpers import NOON, ok, request

# The wire form's keys, in order: what /v1/usage, the JSON export and the ledger's record
# column have always carried.
WIRE_KEYS = [
    "time", "ts", "record_id", "request_id", "user", "key_id", "tier", "capability", "model",
    "provider", "upstream_model", "prompt_tokens", "completion_tokens", "total_tokens", "images",
    "audio_ms", "video_ms", "cost_usd", "fallback", "byok", "list_cost_usd", "charged_usd",
    "status", "latency_ms", "attempts", "estimated", "usage_flagged", "downgraded", "deployment",
    "cache", "tags", "rollout", "batch_id", "org", "team",
]  # fmt: skip

RECORD = UsageRecord(
    ts=1795348800.123,  # 2026-11-22T12:00:00.123Z
    record_id="rec_7",
    request_id="req_abc",
    user="alice",
    key_id="k_1",
    tier="pro",
    capability="text_generation",
    model="gpt-4o",
    provider="openai",
    upstream_model="gpt-4o-2024-08-06",
    prompt_tokens=1200,
    completion_tokens=345,
    images=0,
    audio_ms=0,
    video_ms=0,
    cost_usd=0.004215,
    fallback=True,
    byok=False,
    charged_usd=0.004215,
    status=200,
    latency_ms=812.4,
    attempts=2,
    estimated=False,
    usage_flagged=False,
    downgraded=False,
    deployment="eu",
    cache="miss",
    tags=("team-a", "search"),
    rollout="canary",
    batch_id=None,
)


def test_the_stored_bytes_are_the_compact_form() -> None:
    assert encode(RECORD) == (
        b'{"t":1795348800123,"i":"rec_7","q":"req_abc","u":"alice","k":"k_1","T":"pro",'
        b'"c":"text_generation","m":"gpt-4o","p":"openai","um":"gpt-4o-2024-08-06",'
        b'"pt":1200,"ct":345,"$":4215,"fb":1,"l":812.4,"a":2,"d":"eu","ca":"miss",'
        b'"ro":"canary","tg":["team-a","search"]}'
    )


def test_record_codec_record() -> None:
    assert decode(encode(RECORD)) == RECORD
    byok = replace(RECORD, byok=True, charged_usd=0.0, status=502, tags=(), batch_id="batch_1")
    assert decode(encode(byok)) == byok


def test_the_wire_form_keeps_its_keys_and_values() -> None:
    wire = RECORD.as_dict()
    assert list(wire) == WIRE_KEYS
    assert wire["time"] == "2026-11-22T12:00:00.123Z"
    assert (wire["total_tokens"], wire["list_cost_usd"], wire["tags"]) == (
        1545,
        0.004215,
        ["team-a", "search"],
    )
    assert UsageRecord.from_dict(wire) == RECORD
    assert UsageRecord.from_dict(orjson.loads(orjson.dumps(wire))) == RECORD


def test_a_settled_request_round_trips(config: Config) -> None:
    priced = Price(input=1.0, output=2.0)
    outcome = ok(12, 34, price=priced, latency_ms=123.45, tags=("x",), deployment="us")
    admission = Admission(
        headers={},
        clamp_max_tokens=None,
        request=request(config, price=priced, request_id="r1"),
        started=NOON + 0.5,
    )
    record = settlement(admission, outcome, RecordIds()()).record
    assert record is not None
    assert (record.ts, record.request_id, record.total_tokens) == (NOON + 0.5, "r1", 46)
    assert record.cost_usd == record.charged_usd == 80e-6  # 12 x 1 + 34 x 2 micro-USD
    assert record.latency_ms == 123.5 and record.tags == ("x",)
    assert decode(encode(record)) == record


def test_record_export_row() -> None:
    header, row = list(csv.reader(io.StringIO(to_csv([RECORD]))))
    cells = dict(zip(header, row, strict=True))
    assert header == list(COLUMNS)
    assert cells["time"] == "2026-11-22T12:00:00.123Z"
    assert (cells["total_tokens"], cells["cost_usd"], cells["charged_usd"]) == (
        "1545",
        "0.004215",
        "0.004215",
    )
    assert (cells["fallback"], cells["byok"], cells["tags"]) == ("true", "false", "team-a,search")
    assert (cells["video_ms"], cells["record_id"]) == ("0", "rec_7")
    assert to_csv([RECORD]) == to_csv([RECORD.as_dict()])
    assert orjson.loads(to_json([RECORD])) == [RECORD.as_dict()]


def test_tags_filter_and_group_typed_records() -> None:
    other = replace(RECORD, request_id="req_2", tags=(), status=429, prompt_tokens=5)
    assert with_tag([RECORD, other], "search") == [RECORD]
    rows = {row["tag"]: row for row in by_tag([RECORD, other])}
    assert rows["team-a"]["total_tokens"] == 1545 and rows["team-a"]["errors"] == 0
    assert (rows[None]["requests"], rows[None]["errors"], rows[None]["prompt_tokens"]) == (1, 1, 5)


def test_odd_stored_values_read_as_defaults() -> None:
    odd = UsageRecord.from_dict(
        {"ts": "noon", "user": 7, "status": "x", "tags": ["a", 1], "prompt_tokens": True}
    )
    assert (odd.ts, odd.time, odd.user, odd.status, odd.tags) == (
        0.0,
        "1970-01-01T00:00:00.000Z",
        "",
        0,
        ("a",),
    )
    assert odd.prompt_tokens == 0 and odd.record_id is None and odd.attempts == 1
    assert replace(RECORD, ts=1e13).time == ""  # past the year 9999
