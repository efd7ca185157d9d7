"""The statement arithmetic (pure): fee, charged usage, BYOK discount, rounding to the cent at
the end; and the rollups' charged/BYOK sums, old documents included."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import orjson
import pytest

from gateway.config.model import Tier
from gateway.metering.record import UsageRecord
from gateway.store.memory import MemoryStore
from gateway.usage.roll_groups import BT
from gateway.usage.rollup import fold, merge
from gateway.usage.statement_export import statements_csv
from gateway.usage.statement_rollups import rollup_lines
from gateway.usage.statements import (
    UsageLine,
    build_statements,
    month_bounds,
    statement,
    usd_exact,
)

TIERS = {
    "pro": Tier("pro", {}, monthly_fee_usd=Decimal("20"), byok_discount_percent=Decimal("10")),
    "free": Tier("free", {}, byok_discount_percent=Decimal("10")),
}


def line(user: str = "u", tier: str = "pro", model: str = "m", **counts: object) -> UsageLine:
    values: dict[str, object] = {
        "requests": 0,
        "tokens": 0,
        "charged_usd": Decimal(0),
        "list_cost_usd": Decimal(0),
        "byok_requests": 0,
        "byok_tokens": 0,
        **counts,
    }
    return UsageLine(user, tier, "text_generation", model, **values)  # type: ignore[arg-type]


def test_the_discount_applies_to_fee_plus_charged_usage_when_byok_was_used() -> None:
    lines = [
        line(requests=3, charged_usd=Decimal("0.004995"), list_cost_usd=Decimal("0.004995")),
        line(byok_requests=1, byok_tokens=40, list_cost_usd=Decimal("0.001665")),
    ]
    found = statement("u", lines, TIERS, "2026-11", "redis").as_json()
    # exact: (20 + 0.004995) * 10% = 2.0004995; total 18.0044955
    assert Decimal(found["exact"]["byok_discount_usd"]) == Decimal("2.0004995")
    assert Decimal(found["exact"]["total_usd"]) == Decimal("18.0044955")
    assert (found["monthly_fee_usd"], found["usage_usd"]) == ("20.00", "0.00")
    assert (found["byok_discount_usd"], found["total_usd"]) == ("2.00", "18.00")
    assert found["byok"] == {"used": True, "requests": 1, "tokens": 40, "charged_usd": "0.00"}


def test_rounding_happens_once_at_the_end_half_up() -> None:
    # usage 0.005 exactly: 0.01 alone (half up), and the total is rounded from exact amounts
    found = statement("u", [line(requests=1, charged_usd=Decimal("0.005"))], TIERS, "2026-11", "r")
    assert found.as_json()["usage_usd"] == "0.01"
    assert found.as_json()["total_usd"] == "20.01"
    no_byok = found.as_json()
    assert no_byok["byok_discount_usd"] == "0.00" and no_byok["byok"]["used"] is False
    # three lines of 0.004 each: the sum 0.012 rounds to 0.01, not 3 x 0.00
    three = [line(model=f"m{i}", requests=1, charged_usd=Decimal("0.004")) for i in range(3)]
    assert statement("u", three, TIERS, "2026-11", "r").as_json()["usage_usd"] == "0.01"


def test_no_usage_means_no_fee_and_the_current_tier() -> None:
    found = statement("u", [], TIERS, "2026-11", "redis", current_tier="pro").as_json()
    assert (found["tier"], found["monthly_fee_usd"], found["total_usd"]) == ("pro", "0.00", "0.00")


def test_the_month_tier_is_the_one_most_requests_were_made_in() -> None:
    lines = [line(tier="free", requests=5), line(tier="pro", requests=2)]
    assert statement("u", lines, TIERS, "2026-11", "r").tier == "free"
    tied = [line(tier="free", requests=2), line(tier="pro", requests=2)]
    assert statement("u", tied, TIERS, "2026-11", "r").tier == "pro"  # tie: the higher fee


def test_statements_per_user_sorted_and_csv() -> None:
    lines = [line(user="b", requests=1), line(user="a", byok_requests=1)]
    found = build_statements(lines, TIERS, "2026-11", "r")
    assert [s.user for s in found] == ["a", "b"]
    text = statements_csv(found)
    assert text.splitlines()[1] == "a,2026-11,pro,20.00,0.00,1,0,20.00,10,2.00,18.00"
    formula = statements_csv(build_statements([line(user="=cmd")], TIERS, "2026-11", "r"))
    assert formula.splitlines()[1].startswith("'=cmd,")


@pytest.mark.parametrize("month", ["2026-00", "2026-13", "26-01", "2026-1", "x", "1969-12"])
def test_bad_months_are_refused(month: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds(month)


def test_month_bounds_cover_december() -> None:
    start, end = month_bounds("2026-12")
    assert start == datetime(2026, 12, 1, tzinfo=UTC).timestamp()
    assert end == datetime(2027, 1, 1, tzinfo=UTC).timestamp()


def test_usd_exact_keeps_the_written_decimal() -> None:
    assert usd_exact(0.1) == Decimal("0.1") and usd_exact(True) == Decimal(0)


RECORD = {
    "ts": 1_795_348_800.0,  # 2026-11-22
    "user": "alice",
    "tier": "pro",
    "capability": "text_generation",
    "model": "m",
    "status": 200,
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "cost_usd": 0.000035,
    "list_cost_usd": 0.000035,
}


def test_rollups_keep_charged_and_byok_and_read_old_entries_as_charged() -> None:
    asyncio.run(_rollups())


async def _rollups() -> None:
    store = MemoryStore(stream_maxlen=100)
    folded: dict[str, dict[str, list[object]]] = {}
    fold(
        [
            UsageRecord.from_dict({**RECORD, "charged_usd": 0.000035, "byok": False}),
            UsageRecord.from_dict({**RECORD, "charged_usd": 0.0, "byok": True}),
        ],
        folded,
    )
    key = "gw:roll:u:alice:d:20261122"
    # an entry folded by the version before: 7 fields, no charged/BYOK sums
    old_entry = [1, 0, 0, 10, 5, 35, {}]
    old_combo = next(iter(folded[key]))
    stored = {old_combo: old_entry}
    merge(stored, folded[key])
    assert len(stored[old_combo]) == BT + 1
    await store.put_document(key, "p", orjson.dumps(stored), 3600)
    await store.put_document(
        "gw:roll:full:d:20261122", "p", orjson.dumps(folded["gw:roll:full:d:20261122"]), 3600
    )
    start, end = month_bounds("2026-11")
    [mine] = await rollup_lines(store, start, end, "alice")
    assert (mine.requests, mine.tokens, mine.byok_requests, mine.byok_tokens) == (2, 30, 1, 15)
    assert mine.charged_usd == Decimal("0.000070")  # the old entry's 35 counted as charged
    assert mine.list_cost_usd == Decimal("0.000105")
    [everyone] = await rollup_lines(store, start, end)
    assert (everyone.user, everyone.requests, everyone.byok_requests) == ("alice", 1, 1)
    assert everyone.charged_usd == Decimal("0.000035")
