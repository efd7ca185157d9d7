"""Analytics: rollups folded from the usage stream once, totals and filtered records."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from gateway.http.admin.analytics import every_record
from gateway.store.factory import create_store
from gateway.store.memory import MemoryStore
from gateway.store.port import SettleBatch, Store
from gateway.usage.analytics import RedisAnalytics, UsageFilter
from tests.redis_fixture import RedisServer

DAY = 1_795_305_600.0  # 2026-11-22T00:00:00Z


def record(i: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "ts": DAY + 3600 * (i % 30) + i,
        "request_id": f"r{i}",
        "user": f"u{i % 3}",
        "key_id": f"k{i % 3}",
        "tier": "free" if i % 2 else "pro",
        "capability": "chat",
        "model": "m1" if i % 4 else "m2",
        "provider": "p",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "cost_usd": 0.001,
        "fallback": i % 5 == 0,
        "status": 200 if i % 7 else 429,
        "latency_ms": 100.0 + i,
        "tags": ["a", "b"] if i % 3 == 0 else [],
    }
    base.update(extra)
    return base


async def add(store: Store, records: list[dict[str, Any]]) -> None:
    await store.settle([SettleBatch((), orjson.dumps(r)) for r in records])


async def check(store: Store) -> None:
    analytics = RedisAnalytics(store)
    records = [record(i) for i in range(60)]
    await add(store, records[:40])
    window = UsageFilter(DAY, DAY + 2 * 86_400)
    [total] = await analytics.totals(window, [], "all")
    assert total["requests"] == 40 and total["total_tokens"] == 600
    await add(store, records[40:])
    # folded once each, whichever process runs first (two rollers race)
    await asyncio.gather(analytics.roller.run_once(), RedisAnalytics(store).roller.run_once())
    [total] = await analytics.totals(window, [], "all")
    assert total["requests"] == 60
    assert total["errors"] == sum(1 for r in records if r["status"] == 429)
    assert total["fallbacks"] == 12
    assert total["cost_usd"] == pytest.approx(0.06)
    assert total["p95_latency_ms"] is not None and total["p95_latency_ms"] >= 150
    by_model = await analytics.totals(window, ["model"], "all")
    assert {r["model"]: r["requests"] for r in by_model} == {"m1": 45, "m2": 15}
    free = UsageFilter(DAY, DAY + 2 * 86_400, user="u1", tier="free", tag=None)
    rows = await analytics.totals(free, ["key_id"], "day")
    expected = [r for r in records if r["user"] == "u1" and r["tier"] == "free"]
    assert sum(r["requests"] for r in rows) == len(expected)
    by_user = await analytics.totals(window, ["user"], "all")  # the "people" level
    assert {r["user"]: r["requests"] for r in by_user} == {"u0": 20, "u1": 20, "u2": 20}
    by_tag = await analytics.totals(window, ["tag"], "all")  # the "tags" level
    assert {r["tag"]: r["requests"] for r in by_tag} == {"a,b": 20, "-": 40}
    mine = UsageFilter(DAY, DAY + 2 * 86_400, user="u0", model="m2")  # the per-user level
    [row] = await analytics.totals(mine, ["user"], "all")
    assert row["user"] == "u0" and row["requests"] == sum(
        1 for r in records if r["user"] == "u0" and r["model"] == "m2"
    )
    wide = await analytics.totals(UsageFilter(DAY, DAY + 2 * 86_400, key_id="k1"), ["tag"], "all")
    assert sum(r["requests"] for r in wide) == 20  # the full level
    # hour-aligned ranges with partial days: hours from the full level, days per level
    for extra in (
        {},
        {"user": "u0"},
        {"user": "u2", "model": "m1"},
        {"tag": "a"},
        {"key_id": "k1"},
    ):
        low, high = DAY + 5 * 3600, DAY + 86_400 + 7 * 3600
        [row] = await analytics.totals(UsageFilter(low, high, **extra), [], "all") or [
            {"requests": 0}
        ]
        expected_count = sum(
            1
            for r in records
            if low <= r["ts"] < high
            and all((v in r["tags"]) if k == "tag" else r[k] == v for k, v in extra.items())
        )
        assert row["requests"] == expected_count, extra
    tagged = await analytics.totals(UsageFilter(DAY, DAY + 86_400 * 2, tag="a"), [], "all")
    assert tagged[0]["requests"] == 20
    hours = await analytics.totals(UsageFilter(DAY, DAY + 3600), [], "hour")
    assert hours == [] or hours[0]["bucket"] == "2026-11-22T00"
    errors = UsageFilter(DAY, DAY + 2 * 86_400, status="error")
    page, cursor = await analytics.records(errors, 3, None)
    assert [r.status for r in page] == [429, 429, 429] and cursor is not None
    rest, cursor = await analytics.records(errors, 100, cursor)
    assert cursor is None and len(page) + len(rest) == total["errors"]
    exported = await every_record(analytics, UsageFilter(DAY, DAY + 86_400 * 2, model="m2"), 1000)
    assert len(exported) == 15 and exported == sorted(exported, key=lambda r: r.ts)


def test_memory_store() -> None:
    asyncio.run(check(MemoryStore(stream_maxlen=10_000)))


def test_redis(redis: RedisServer) -> None:
    from gateway.config.model import Settings

    async def run() -> None:
        store = create_store(redis.url, Settings())
        try:
            await check(store)
        finally:
            await store.aclose()

    asyncio.run(run())
