"""A usage record → its ``usage_records`` row: the typed record's values in the ledger's columns."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal

import orjson

from gateway.ledger.rows import BIGINT, TAG_SEPARATOR, legacy_id, parse, to_row
from gateway.metering.record_codec import encode
from tests.usage.test_record import RECORD

ENTRY = "1795348800200-0"


def test_a_record_becomes_its_row() -> None:
    row = to_row(ENTRY, RECORD)
    assert row.ts == dt.datetime(2026, 11, 22, 12, 0, 0, 123000, tzinfo=dt.UTC)
    assert row.day == dt.date(2026, 11, 22)
    assert (row.record_id, row.request_id, row.user_id, row.tier) == (
        "rec_7",
        "req_abc",
        "alice",
        "pro",
    )
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (1200, 345, 1545)
    assert row.cost_usd == Decimal("0.004215000") and row.latency_ms == 812.4
    assert (row.status, row.attempts, row.fallback, row.byok) == (200, 2, True, False)
    assert row.tags == TAG_SEPARATOR.join(["search", "team-a"])
    assert orjson.loads(row.record) == RECORD.as_dict()  # the wire form, as /v1/usage shows it
    assert parse(ENTRY, encode(RECORD)) == row  # from the stream's compact bytes alike


def test_a_record_without_an_id_or_a_time_gets_the_legacy_id_and_the_entrys_time() -> None:
    raw = orjson.dumps({"request_id": "old", "user": "bob", "prompt_tokens": 3})  # full form
    row = parse(ENTRY, raw)
    assert row is not None
    assert row.ts == dt.datetime(2026, 11, 22, 12, 0, 0, 200000, tzinfo=dt.UTC)
    assert row.record_id == legacy_id("old", 1795348800.2) == "old@1795348800200"
    assert (row.user_id, row.total_tokens, row.status, row.attempts) == ("bob", 3, 200, 1)


def test_values_are_made_safe_for_their_columns() -> None:
    # 2**64 - 1: the largest integer a stored record's JSON can hold
    huge = replace(RECORD, prompt_tokens=2**64 - 1, completion_tokens=-5, user="a\x00b" * 300)
    row = to_row(ENTRY, huge)
    assert (row.prompt_tokens, row.completion_tokens, row.total_tokens) == (BIGINT, 0, BIGINT)
    assert row.user_id == ("ab" * 300)[:512]
    stored = parse(ENTRY, encode(replace(RECORD, model="m\x00")))
    assert stored is not None and stored.model == "m" and "\\u0000" not in stored.record
    assert parse(ENTRY, b"[1]") is None
