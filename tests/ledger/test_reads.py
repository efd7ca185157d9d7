"""Reads from the ledger: records of any range for /v1/usage and the export, and contract D's
analytics (rollups for whole days, rows for the edges) against totals computed here."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import orjson
from redis.asyncio import Redis

from gateway.ledger.db import Database
from gateway.ledger.reader import read_records
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.usage.analytics import UsageFilter
from gateway.usage.postgres_analytics import PostgresAnalytics
from tests.ledger.test_shipper import add, drain
from tests.redis_fixture import RedisServer

DAY0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp()  # "what did this user spend in March"
MODELS = ("small", "large")


def records() -> list[dict[str, Any]]:
    """Every 20 minutes over 5 days: two users, two models, some errors and tags."""
    made = []
    for n in range(5 * 72):
        made.append(
            {
                "ts": DAY0 + n * 1200 + 7,
                "request_id": f"r{n}",
                "user": "alice" if n % 3 else "bob",
                "key_id": "k",
                "tier": "free",
                "capability": "text_generation",
                "model": MODELS[n % 2],
                "provider": "p",
                "prompt_tokens": 10,
                "completion_tokens": n % 7,
                "cost_usd": 0.001,
                "status": 500 if n % 10 == 0 else 200,
                "latency_ms": float(n % 50),
                "tags": ["team-a"] if n % 4 == 0 else [],
            }
        )
    return made


def expected(made: list[dict[str, Any]], start: float, end: float, **where: Any) -> Counter[str]:
    found: Counter[str] = Counter()
    for r in made:
        if start <= r["ts"] < end and all(r.get(k) == v for k, v in where.items()):
            found[r["model"]] += 1
    return found


def test_records_and_analytics_over_any_range(redis: RedisServer, database_url: str) -> None:
    made = records()

    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(LedgerSettings(database_url=database_url, retention_days=0), db, client)
        analytics = PostgresAnalytics(db)
        try:
            await add(client, [orjson.dumps(r) for r in made])
            await drain(shipper)
            start, end = DAY0 + 5 * 3600, DAY0 + 3 * 86_400 + 7 * 3600  # partial edge days
            mine = await read_records(db, "alice", start, end)
            assert [r.request_id for r in mine] == [
                r["request_id"] for r in made if r["user"] == "alice" and start <= r["ts"] < end
            ]
            flt = UsageFilter(start=start, end=end)
            rows = await analytics.totals(flt, ["model"], "all")
            assert {row["model"]: row["requests"] for row in rows} == expected(made, start, end)
            in_range = [r for r in made if start <= r["ts"] < end]
            hourly = await analytics.totals(flt, ["model"], "hour")  # the hourly rollup
            assert sum(row["requests"] for row in hourly) == len(in_range)
            assert len({row["bucket"] for row in hourly}) == (end - start) // 3600
            one = await analytics.totals(
                UsageFilter(start=start, end=end, user="alice"), ["model"], "all"
            )
            assert {row["model"]: row["requests"] for row in one} == expected(
                made, start, end, user="alice"
            )
            assert sum(row["errors"] for row in rows) == sum(r["status"] >= 400 for r in in_range)
            assert sum(row["completion_tokens"] for row in rows) == sum(
                r["completion_tokens"] for r in in_range
            )
            by_day = await analytics.totals(
                UsageFilter(start=start, end=end, user="bob"), [], "day"
            )
            days = Counter(
                dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d")
                for r in in_range
                if r["user"] == "bob"
            )
            assert {row["bucket"]: row["requests"] for row in by_day} == dict(days)
            tagged = await analytics.totals(
                UsageFilter(start=start, end=end, tag="team-a"), [], "all"
            )
            assert tagged[0]["requests"] == sum(bool(r["tags"]) for r in in_range)
            errors = await analytics.totals(
                UsageFilter(start=start, end=end, status="5xx"), ["model"], "hour"
            )
            assert sum(row["requests"] for row in errors) == sum(
                r["status"] >= 500 for r in in_range
            )
            seen: list[str] = []
            cursor = None
            while True:
                page, cursor = await analytics.records(flt, 50, cursor)
                seen += [r.request_id for r in page]
                if cursor is None:
                    break
            assert sorted(seen) == sorted(r["request_id"] for r in in_range)
            assert len(seen) == len(set(seen))
        finally:
            await db.aclose()
            await client.aclose()

    asyncio.run(scenario())
