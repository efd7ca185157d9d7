"""A usage record → its ``usage_records`` row: the typed record's values in the ledger's columns."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from gateway.ledger.rows import BIGINT, TAG_SEPARATOR, _compact_row, legacy_id, parse, to_row
from gateway.metering.record_codec import CHARGED, COST, SHORT, TAGS, TS, decode, encode
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


def test_a_compact_record_gives_the_row_the_typed_record_gives() -> None:
    """``parse`` makes a compact record's row without the typed record when its values have
    their expected types: the same row, value for value, as ``to_row`` of the decoded record,
    whatever the stored values (a wrong type, a value out of range, a key left out)."""
    rng = random.Random(25)
    values: list[object] = [
        None, True, False, 0, 1, -1, 7, 200, 2**31, 2**63, 2**64 - 1, -(2**63), 0.5, 1e300,
        "", "x", "é\u2028", "t" * 600, "a\x1fb", [], ["t1", 2, "t1", ""], {"k": 1},
        10**15 - 1, 10**15, -(10**15) + 1, 253_402_300_799_000, 4_000, 1_795_348_800_123,
    ]  # fmt: skip
    base = orjson.loads(encode(RECORD))
    fast = 0
    for _ in range(3000):
        stored = dict(base)
        for short in rng.sample([*sorted(SHORT), TS, COST, CHARGED, TAGS], rng.randrange(0, 6)):
            if rng.random() < 0.2:
                stored.pop(short, None)
            else:
                stored[short] = rng.choice(values)
        raw = orjson.dumps(stored)
        record = decode(raw)
        assert record is not None
        try:
            expected = to_row(ENTRY, record)
        except TypeError:  # tokens summing past JSON's 64 bits: the typed path fails alike
            with pytest.raises(TypeError):
                parse(ENTRY, raw)
            continue
        assert parse(ENTRY, raw) == expected, stored
        assert parse(ENTRY, raw).record == expected.record  # type: ignore[union-attr]
        fast += _compact_row(ENTRY, stored) is not None
    assert 300 < fast < 3000  # both paths were taken


def test_the_gateways_records_take_the_direct_path() -> None:
    for record in (RECORD, replace(RECORD, tags=(), cost_usd=0.0, charged_usd=0.0, org="o")):
        stored = orjson.loads(encode(record))
        row = _compact_row(ENTRY, stored)
        assert row is not None and row == to_row(ENTRY, record)
