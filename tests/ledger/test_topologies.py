"""The shipper on a Redis Cluster client (the stream is one key: one slot), and retention."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import orjson
from redis.asyncio.cluster import RedisCluster

from gateway.ledger import migrate, partitions
from gateway.ledger.db import Database
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.store import keys
from tests.ledger.test_shipper import count, drain, record
from tests.redis_fixture import RedisServer


def test_ships_through_a_cluster_client(database_url: str) -> None:
    server = RedisServer(cluster=True).start()

    async def scenario() -> None:
        client = RedisCluster(host="127.0.0.1", port=server.port)
        db = Database(database_url)
        shipper = Shipper(
            LedgerSettings(database_url=database_url, batch=100, claim_idle_ms=100),
            db,
            client,
            consumer="c",
        )
        try:
            for n in range(400):
                await client.xadd(keys.USAGE_STREAM, {"r": record(n)})
            await drain(shipper)
            assert await count(database_url) == 400
        finally:
            await db.aclose()
            await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.close()


def test_retention_drops_old_partitions_and_late_records(database_url: str) -> None:
    today = dt.date(2026, 11, 26)

    async def scenario() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await migrate.upgrade(conn)
            days = [today - dt.timedelta(days=n) for n in (0, 10, 29, 30, 31, 45)]
            await partitions.ensure(conn, days)
            dropped = await partitions.drop_expired(conn, today, 30)
            assert dropped == ["usage_records_20261012", "usage_records_20261026"]
            kept = await partitions.existing(conn)
            assert min(kept) == today - dt.timedelta(days=30)
            assert await partitions.drop_expired(conn, today, 0) == []
        finally:
            await conn.close()

    asyncio.run(scenario())


def test_records_older_than_retention_are_not_shipped(
    redis: RedisServer, database_url: str
) -> None:
    from redis.asyncio import Redis

    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(LedgerSettings(database_url=database_url, retention_days=30), db, client)
        try:
            old = orjson.loads(record(1))
            old["ts"] = dt.datetime(2020, 1, 1, tzinfo=dt.UTC).timestamp()
            await client.xadd(keys.USAGE_STREAM, {"r": orjson.dumps(old)})
            await client.xadd(keys.USAGE_STREAM, {"r": b"not json"})
            await client.xadd(keys.USAGE_STREAM, {"r": record(2)})
            await drain(shipper)
            assert await count(database_url) == 1
        finally:
            await db.aclose()
            await client.aclose()

    asyncio.run(scenario())
