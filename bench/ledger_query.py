"""The ledger's read and write figures on a throwaway PostgreSQL (docs/ledger.md).

    python bench/ledger_query.py                 # 5,000,000 rows over 120 days, 2,000 users
    python bench/ledger_query.py --rows 200000   # a quick smoke

Loads generated rows server-side (``INSERT ... SELECT`` from ``generate_series`` into the day
partitions, then the rollups as the shipper keeps them), then times, best of 5 after a warm
run: a 90-day ``/v1/usage`` read of one user (``reader.read_records``: partition pruning plus
``usage_records_user_ts``), 30-day per-model analytics (``PostgresAnalytics.totals``: the
coarse rollups; also with partial edge days) and one user's 30-day per-model days
(``usage_daily`` by ``usage_daily_user_day``). Last, the shipper's rate: records XADDed to a
real redis-server, shipped by one ``Shipper`` (parse, one insert with the rollups per batch,
XACK).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from pathlib import Path

import asyncpg
import orjson
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.ledger import migrate, partitions
from gateway.ledger.db import Database
from gateway.ledger.reader import read_records
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.store import keys
from gateway.usage.analytics import UsageFilter
from gateway.usage.postgres_analytics import PostgresAnalytics
from tests.ledger.pg_fixture import PostgresServer
from tests.redis_fixture import RedisServer

GENERATE = """
INSERT INTO usage_records (day, ts, request_id, user_id, key_id, tier, capability, model,
    provider, upstream_model, status, prompt_tokens, completion_tokens, total_tokens, cost_usd,
    latency_ms, attempts, tags, record)
SELECT g.ts::date, g.ts, 'req_' || g.n, 'user' || (g.n % $3), 'key' || (g.n % $3), 'free',
    'text_generation', 'model' || (g.n % 7), 'provider' || (g.n % 3), 'up',
    CASE WHEN g.n % 50 = 0 THEN 500 ELSE 200 END, 100 + g.n % 900, g.n % 500,
    100 + g.n % 900 + g.n % 500, (g.n % 1000) / 100000.0, (g.n % 3000)::real, 1, '{}',
    jsonb_build_object('request_id', 'req_' || g.n, 'user', 'user' || (g.n % $3),
        'ts', extract(epoch FROM g.ts), 'model', 'model' || (g.n % 7), 'prompt_tokens',
        100 + g.n % 900, 'completion_tokens', g.n % 500, 'status', 200)
FROM (SELECT n, $1::timestamptz + (n * $4::float8) * interval '1 second' AS ts
      FROM generate_series($5::bigint, $2::bigint) AS n) AS g
"""
ROLLUP = """
INSERT INTO usage_daily (day, user_id, key_id, tier, model, provider, capability, requests,
    prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks, latency_ms_sum)
SELECT day, user_id, key_id, tier, model, provider, capability, count(*), sum(prompt_tokens),
    sum(completion_tokens), sum(total_tokens), sum(cost_usd),
    count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE fallback), sum(latency_ms)
FROM usage_records GROUP BY 1, 2, 3, 4, 5, 6, 7
"""
COARSE = """
INSERT INTO usage_daily_models (day, tier, model, provider, capability, requests,
    prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks, latency_ms_sum)
SELECT day, tier, model, provider, capability, sum(requests), sum(prompt_tokens),
    sum(completion_tokens), sum(total_tokens), sum(cost_usd), sum(errors), sum(fallbacks),
    sum(latency_ms_sum)
FROM usage_daily GROUP BY 1, 2, 3, 4, 5
"""
HOURLY = """
INSERT INTO usage_hourly_models (hour, tier, model, provider, capability, requests,
    prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks, latency_ms_sum)
SELECT date_trunc('hour', ts, 'UTC'), tier, model, provider, capability, count(*),
    sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd),
    count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE fallback), sum(latency_ms)
FROM usage_records GROUP BY 1, 2, 3, 4, 5
"""


async def load(url: str, rows: int, days: int, users: int) -> tuple[float, dt.datetime]:
    start = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start -= dt.timedelta(days=days)
    conn = await asyncpg.connect(url)
    began = time.perf_counter()
    try:
        await migrate.upgrade(conn)
        await partitions.ensure(conn, (start.date() + dt.timedelta(days=d) for d in range(days)))
        step = days * 86_400 / rows
        chunk = 500_000
        for first in range(0, rows, chunk):
            last = min(rows, first + chunk) - 1
            await conn.execute(GENERATE, start, last, users, step, first)
        await conn.execute(ROLLUP)
        await conn.execute(COARSE)
        await conn.execute(HOURLY)
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return time.perf_counter() - began, start


async def timed(call: object, repeat: int = 5) -> tuple[float, object]:
    assert callable(call)
    result = await call()  # warm
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        result = await call()
        best = min(best, time.perf_counter() - began)
    return best * 1000, result


async def queries(url: str, days: int) -> None:
    db = Database(url)
    analytics = PostgresAnalytics(db)
    now = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    try:
        ms, found = await timed(lambda: read_records(db, "user42", now - 90 * 86_400, now))
        print(f"90-day usage of one user: {ms:.1f} ms ({len(found)} records)")  # type: ignore[arg-type]
        flt = UsageFilter(start=now - 30 * 86_400, end=now)
        ms, rows = await timed(lambda: analytics.totals(flt, ["model"], "day"))
        print(f"30-day per-model analytics by day: {ms:.1f} ms ({len(rows)} rows)")  # type: ignore[arg-type]
        flt = UsageFilter(start=now - 30 * 86_400 + 3600, end=now - 3600)
        ms, rows = await timed(lambda: analytics.totals(flt, ["model"], "all"))
        print(f"30-day per-model analytics, partial edge days: {ms:.1f} ms ({len(rows)} rows)")  # type: ignore[arg-type]
        flt = UsageFilter(start=now - 30 * 86_400, end=now, user="user42")
        ms, rows = await timed(lambda: analytics.totals(flt, ["model"], "day"))
        print(f"30-day per-model analytics of one user: {ms:.1f} ms ({len(rows)} rows)")  # type: ignore[arg-type]
        async with (await db.pool()).acquire() as conn:
            plan = await conn.fetch(
                "EXPLAIN SELECT record FROM usage_records WHERE day BETWEEN $1 AND $2"
                " AND ts >= $3 AND ts < $4 AND user_id = $5 ORDER BY ts",
                dt.date.today() - dt.timedelta(days=90), dt.date.today(),
                dt.datetime.fromtimestamp(now - 90 * 86_400, dt.UTC),
                dt.datetime.fromtimestamp(now, dt.UTC), "user42",
            )  # fmt: skip
            print("plan (one user):", plan[0][0], "|", plan[-1][0].strip())
    finally:
        await db.aclose()


async def shipper_rate(url: str, redis_url: str, count: int) -> None:
    client = Redis.from_url(redis_url)
    base = time.time()
    records = [
        orjson.dumps(
            {"ts": base + n / 1000, "request_id": f"ship{n}", "user": f"u{n % 100}",
             "model": "m", "prompt_tokens": 10, "completion_tokens": 5, "status": 200,
             "cost_usd": 0.0001, "tags": ["a"] if n % 3 == 0 else []}
        )
        for n in range(count)
    ]  # fmt: skip
    for first in range(0, count, 5000):
        async with client.pipeline(transaction=False) as pipe:
            for raw in records[first : first + 5000]:
                pipe.xadd(keys.USAGE_STREAM, {"r": raw})
            await pipe.execute()
    db = Database(url)
    shipper = Shipper(LedgerSettings(database_url=url), db, client)
    try:
        await shipper.maintain()
        began = time.perf_counter()
        while shipper.shipped < count:
            await shipper.step(block_ms=10)
        seconds = time.perf_counter() - began
        print(f"shipper: {count} records in {seconds:.2f} s = {count / seconds:,.0f} rows/s")
    finally:
        await db.aclose()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--ship", type=int, default=100_000, help="records for the shipper rate")
    args = parser.parse_args()
    postgres = PostgresServer().start()
    redis = RedisServer().start()
    try:
        seconds, _ = asyncio.run(load(postgres.url, args.rows, args.days, args.users))
        print(f"loaded {args.rows:,} rows over {args.days} days in {seconds:.1f} s")
        asyncio.run(queries(postgres.url, args.days))
        asyncio.run(shipper_rate(postgres.url, redis.url, args.ship))
    finally:
        redis.close()
        postgres.close()


if __name__ == "__main__":
    main()
