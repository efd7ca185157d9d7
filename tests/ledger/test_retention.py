"""Retention through the shipper's maintenance: old partitions dropped, old rollup days deleted."""

from __future__ import annotations

import asyncio
import datetime as dt

from redis.asyncio import Redis

from gateway.ledger.db import Database
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from tests.ledger.test_shipper import add, count, drain, record
from tests.redis_fixture import RedisServer

NOW = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
TODAY = NOW.date()
AGES = (0, 20, 45, 90)  # days before today of the shipped records
ROLLUPS = ("usage_daily", "usage_daily_tags", "usage_daily_models")


async def days_of(url: str) -> dict[str, set[int]]:
    """Each rollup table (and usage_records) → the ages in days of the days it holds."""
    found = {}
    for table in (*ROLLUPS, "usage_records"):
        days = await count(url, f"SELECT array_agg(DISTINCT day) FROM {table}")
        found[table] = {(TODAY - day).days for day in days or []}
    hours = await count(url, "SELECT array_agg(DISTINCT hour) FROM usage_hourly_models")
    found["usage_hourly_models"] = {(TODAY - hour.astimezone(dt.UTC).date()).days for hour in hours}
    return found


def test_retention_prunes_the_rollups_too(redis: RedisServer, database_url: str) -> None:
    def shipper(db: Database, client: Redis, retention: int, rollups: int) -> Shipper:
        settings = LedgerSettings(
            database_url=database_url, retention_days=retention, rollup_retention_days=rollups
        )
        return Shipper(settings, db, client, clock=NOW.timestamp, consumer="c")

    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        try:
            stamps = [(NOW - dt.timedelta(days=age)).timestamp() for age in AGES]
            await add(client, [record(n, ts=ts, tags=["t"]) for n, ts in enumerate(stamps)])
            await drain(shipper(db, client, retention=0, rollups=0))  # keeps everything
            every = set(AGES)
            assert await days_of(database_url) == dict.fromkeys(
                (*ROLLUPS, "usage_records", "usage_hourly_models"), every
            )

            await shipper(db, client, retention=30, rollups=60).maintain()
            found = await days_of(database_url)
            assert found["usage_records"] == {0, 20}  # partitions past 30 days dropped
            for table in (*ROLLUPS, "usage_hourly_models"):
                assert found[table] == {0, 20, 45}, table  # rollup days past 60 deleted

            # rollups shorter than the records: kept as long as the records (30 days)
            await shipper(db, client, retention=30, rollups=10).maintain()
            found = await days_of(database_url)
            for table in (*ROLLUPS, "usage_hourly_models"):
                assert found[table] == {0, 20}, table

            await shipper(db, client, retention=0, rollups=1).maintain()  # records kept: all
            assert (await days_of(database_url))["usage_daily"] == {0, 20}
            assert await count(database_url, "SELECT sum(requests) FROM usage_daily") == 2
        finally:
            await db.aclose()
            await client.aclose()

    asyncio.run(scenario())
