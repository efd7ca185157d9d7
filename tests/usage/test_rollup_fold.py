"""The roller's fold from the stored bytes sums exactly what decoding each record would."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import decode, encode
from gateway.usage.rollup import Document, fold, fold_stored

TS = 1_796_000_000.0
PLAIN = UsageRecord(
    ts=TS, record_id="r1", request_id="q1", user="alice", key_id="k1", tier="free",
    capability="chat", model="m1", provider="p1", upstream_model="u1", prompt_tokens=20,
    completion_tokens=120, cost_usd=0.000025, charged_usd=0.000025, latency_ms=180.4,
)  # fmt: skip


def by_decoding(raws: list[bytes]) -> dict[str, Document]:
    into: dict[str, Document] = {}
    fold([r for r in map(decode, raws) if r is not None], into)
    return into


def in_place(raws: list[bytes]) -> tuple[int, dict[str, Document]]:
    into: dict[str, Document] = {}
    return fold_stored(raws, into), into


def test_typical_records_sum_alike() -> None:
    raws = [
        encode(PLAIN),
        encode(PLAIN),
        encode(UsageRecord(**{**_fields(PLAIN), "user": "bob", "status": 429, "byok": True})),
        encode(UsageRecord(**{**_fields(PLAIN), "tags": ("b", "a\tx"), "fallback": True})),
        encode(UsageRecord(**{**_fields(PLAIN), "ts": TS + 7200, "org": "o1", "team": "t1"})),
        encode(UsageRecord(**{**_fields(PLAIN), "charged_usd": 0.0, "model": None})),
    ]
    count, folded = in_place(raws)
    assert count == len(raws)
    assert folded == by_decoding(raws)
    assert sum(e[0] for k, d in folded.items() if ":coarse:d:" in k for e in d.values()) == 6


def test_odd_and_old_values_sum_alike() -> None:
    full = orjson.dumps(PLAIN.as_dict())  # the full form, written before the compact one
    stored: list[Any] = [
        {"t": 1_796_000_000_000, "u": True, "k": 1, "T": None, "s": None, "pt": "7"},
        {"t": 1_796_000_000_000, "u": "alice", "s": "500", "tg": ["x", 1, True, None, ""]},
        {"t": 1_796_000_000_000, "u": ["a"], "tg": [["nested"]], "l": "slow", "$": True},
        {"t": 1_796_000_000_000, "u": "a", "tg": "x", "l": 1e308, "ch": 5, "b": 1},
        {"t": "soon", "u": 1.0, "s": 503, "fb": 1, "pt": 3, "ct": -2, "l": 0.5},
    ]
    raws = [full, b"not json", b"[1, 2]", *(orjson.dumps(s) for s in stored)]
    count, folded = in_place(raws)
    assert count == 1 + len(stored)
    assert folded == by_decoding(raws)


_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 600), st.floats(allow_nan=False, width=32),
    st.sampled_from(["", "a", "b\x1fc", "-"]), st.lists(st.sampled_from(["a", "b", 1]), max_size=3),
)  # fmt: skip
_KEYS = ["u", "k", "T", "m", "p", "c", "o", "tm", "s", "tg", "pt", "ct", "$", "ch", "l", "fb", "b"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(_KEYS), _VALUE, max_size=8), max_size=6))
def test_any_stored_values_sum_alike(records: list[dict[str, Any]]) -> None:
    raws = [orjson.dumps({"t": 1_796_000_000_000, **r}) for r in records]
    count, folded = in_place(raws)
    assert count == len(raws)
    assert folded == by_decoding(raws)


def _fields(record: UsageRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in UsageRecord.__slots__}
