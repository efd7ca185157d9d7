"""The shipper against a real Redis stream and a real PostgreSQL: exactly once, crash, outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from gateway.ledger import migrate, stream, writer
from gateway.ledger.db import Database
from gateway.ledger.metrics import LedgerMetrics
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.store import keys
from tests.ledger.pg_fixture import PostgresServer
from tests.redis_fixture import RedisServer


def record(n: int, *, user: str = "u1", ts: float | None = None, **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "time": "x",
            "ts": ts if ts is not None else START + n / 1000,
            "request_id": f"req_{n:08d}",
            "user": user,
            "key_id": "k1",
            "tier": "free",
            "capability": "text_generation",
            "model": "text",
            "provider": "mock",
            "upstream_model": "m",
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "total_tokens": 5,
            "cost_usd": 0.000125,
            "status": 200,
            "latency_ms": 12.5,
            "fallback": False,
            **extra,
        }
    )


START = round(time.time(), 3)


def run(coro: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(coro())


async def add(client: Redis, records: list[bytes]) -> list[str]:
    async with client.pipeline(transaction=False) as pipe:
        for raw in records:
            pipe.xadd(keys.USAGE_STREAM, {"r": raw})
        ids = await pipe.execute()
    return [i.decode() for i in ids]


async def count(url: str, sql: str = "SELECT count(*) FROM usage_records") -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def drain(shipper: Shipper, rounds: int = 50) -> None:
    """Steps until a step ships nothing and nothing is pending."""
    for _ in range(rounds):
        shipped = await shipper.step(block_ms=10)
        if not shipped and not shipper._retry:
            await shipper.upkeep()
            if shipper.lag == 0:
                return
    raise AssertionError(f"not drained: lag {shipper.lag}")


def settings(url: str, **options: Any) -> LedgerSettings:
    return LedgerSettings(database_url=url, batch=options.pop("batch", 300), **options)


def test_records_are_shipped_once_with_rollups(redis: RedisServer, database_url: str) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(settings(database_url), db, client, consumer="a")
        try:
            await add(client, [record(n, tags=["t1"] if n % 2 else []) for n in range(1000)])
            await add(client, [record(n) for n in range(10)])  # the same records again
            other = record(5, ts=START - 1)  # another request reusing a client's request id
            await add(client, [other])
            await drain(shipper)
            assert await count(database_url) == 1001
            assert shipper.shipped == 1001
            sums = await count(
                database_url, "SELECT row(sum(requests), sum(total_tokens))::text FROM usage_daily"
            )
            assert sums == "(1001,5005)"
            tagged = await count(database_url, "SELECT sum(requests) FROM usage_daily_tags")
            assert tagged == 500
            dupes = await count(
                database_url,
                "SELECT count(*) FROM (SELECT request_id FROM usage_records"
                " GROUP BY request_id HAVING count(*) > 1) d",
            )
            assert dupes == 1  # req_00000005: two requests, each once
            pending = await client.xpending(keys.USAGE_STREAM, stream.GROUP)
            assert pending["pending"] == 0
        finally:
            await db.aclose()
            await client.aclose()

    run(scenario)


def test_a_session_without_the_staging_table_ships_on_the_next_attempt(
    redis: RedisServer, database_url: str
) -> None:
    """The writer remembers which sessions hold its staging table; one that no longer does
    (here dropped under it) fails its COPY once, and the batch is shipped in the same step."""

    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url, size=1)
        shipper = Shipper(settings(database_url), db, client, consumer="s")
        try:
            await add(client, [record(n) for n in range(50)])
            await drain(shipper)
            async with (await db.pool()).acquire() as conn:
                assert conn.get_server_pid() in writer._staged
                await conn.execute(f"DROP TABLE pg_temp.{writer.STAGE}")
            await add(client, [record(n) for n in range(50, 120)])
            assert await shipper.step(block_ms=10) == 70
            assert await count(database_url) == 120
        finally:
            await db.aclose()
            await client.aclose()

    run(scenario)


def test_a_dead_consumers_pending_entries_are_claimed(
    redis: RedisServer, database_url: str
) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        try:
            await add(client, [record(n) for n in range(500)])
            await stream.ensure_group(client)
            taken = await stream.read_new(client, "dead", 200, 10)  # read, never acknowledged
            assert len(taken) == 200
            shipper = Shipper(settings(database_url, claim_idle_ms=100), db, client, consumer="b")
            await asyncio.sleep(0.2)
            await drain(shipper)
            assert await count(database_url) == 500
        finally:
            await db.aclose()
            await client.aclose()

    run(scenario)


def test_postgres_down_keeps_records_in_the_stream_then_catches_up(
    redis: RedisServer, database_url: str, postgres_server: PostgresServer
) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(settings(database_url), db, client, consumer="a")
        try:
            await add(client, [record(n) for n in range(300)])
            await drain(shipper)
            postgres_server.stop()
            await db.aclose()  # the pool's connections died with the server
            await add(client, [record(n) for n in range(300, 900)])
            for _ in range(3):
                with pytest.raises((OSError, asyncpg.PostgresError, asyncpg.InterfaceError)):
                    await shipper.step(block_ms=10)
            await shipper.upkeep()  # trims only what was acknowledged
            assert shipper.lag == 600 + 0
            assert await client.xlen(keys.USAGE_STREAM) >= 600
            postgres_server.start()
            await drain(shipper)
            assert await count(database_url) == 900
        finally:
            postgres_server.start()
            await db.aclose()
            await client.aclose()

    run(scenario)


def test_the_stream_is_trimmed_only_below_what_is_unacknowledged(
    redis: RedisServer, database_url: str
) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(settings(database_url, batch=1000), db, client, consumer="a")
        try:
            await stream.ensure_group(client)
            ids = await add(client, [record(n) for n in range(3000)])
            held = await stream.read_new(client, "slow", 10, 10)  # pending, oldest
            assert held[0].id == ids[0]
            for _ in range(5):
                await shipper.step(block_ms=10)
            await shipper.upkeep()
            assert await client.xlen(keys.USAGE_STREAM) == 3000  # the oldest is still pending
            await stream.ack(client, [entry.id for entry in held])
            fresh = await add(client, [record(n) for n in range(3000, 3050)])  # not delivered
            await shipper.upkeep()
            assert await client.xlen(keys.USAGE_STREAM) < 3000  # shipped entries trimmed
            kept = await client.xrange(keys.USAGE_STREAM, min=fresh[0], max="+")
            assert [entry_id.decode() for entry_id, _ in kept] == fresh
        finally:
            await db.aclose()
            await client.aclose()

    run(scenario)


def test_migrations_apply_once(database_url: str) -> None:
    async def scenario() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            assert await migrate.upgrade(conn) == [
                "0001_usage_ledger.sql",
                "0002_usage_daily_models.sql",
                "0003_hourly_and_user_indexes.sql",
                "0004_record_ids.sql",
                "0005_org_team.sql",
            ]
            assert await migrate.upgrade(conn) == []
            assert await migrate.pending(conn) == []
        finally:
            await conn.close()

    run(scenario)


def test_a_record_postgres_would_refuse_does_not_stall_the_ledger(
    redis: RedisServer, database_url: str
) -> None:
    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(settings(database_url), db, client, consumer="a")
        try:
            nul = record(1, tags=["a\x00b"], note="x\x00y")  # jsonb refuses NUL in text
            await add(client, [record(0), nul, record(2)])
            await drain(shipper)
            assert await count(database_url) == 3
            tags = await count(
                database_url,
                "SELECT tags::text FROM usage_records WHERE request_id = 'req_00000001'",
            )
            assert tags == "{ab}"
        finally:
            await db.aclose()
            await client.aclose()

    run(scenario)


@pytest.mark.parametrize("uptime_s", [0.5, 60.0, 3599.0])
def test_the_first_step_maintains_whatever_the_hosts_uptime(
    redis: RedisServer, database_url: str, uptime_s: float
) -> None:
    """The monotonic clock starts near 0 at boot: maintenance (migrations, partitions), upkeep
    and claims are all due at the first step, not once the host has been up an hour."""

    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        shipper = Shipper(
            settings(database_url), db, client, consumer="a", monotonic=lambda: uptime_s
        )
        try:
            await add(client, [record(n) for n in range(5)])
            await shipper.step(block_ms=10)
            assert await count(database_url) == 5
            assert shipper.lag == 5  # measured by the first step's upkeep, before shipping
        finally:
            await db.aclose()
            await client.aclose()

    run(scenario)


def test_asyncpg_internal_client_errors_are_connection_failures() -> None:
    """Issue 23 item 18: at a Postgres shutdown asyncpg raised ``InternalClientError``, which
    the shipper logged as "unexpected" and did not count in gateway_ledger_failures_total."""
    from gateway.ledger.db import ERRORS
    from gateway.ledger.shipper import RETRIED

    for error in (asyncpg.InternalClientError, asyncpg.exceptions.ProtocolError):
        assert issubclass(error, ERRORS) and issubclass(error, RETRIED)


@pytest.mark.parametrize("linger_ms", [0, 1000])
def test_after_a_short_batch_the_loop_lingers_so_one_insert_gathers_a_trickle(
    redis: RedisServer, database_url: str, linger_ms: int
) -> None:
    """Records arriving one by one (as under load, a few per read) are inserted in a few
    batches when the loop lingers after a short one, and in about one insert per record
    when it reads again at once (the case the linger is for)."""

    async def scenario() -> None:
        client = Redis.from_url(redis.url)
        db = Database(database_url)
        registry = CollectorRegistry()
        metrics = LedgerMetrics(registry)
        shipper = Shipper(
            settings(database_url, linger_ms=linger_ms, batch=1000), db, client, metrics=metrics
        )
        try:
            await stream.ensure_group(client)
            await shipper.start()
            for n in range(16):  # 16 records over about 0.8 s
                await add(client, [record(n)])
                await asyncio.sleep(0.05)
            for _ in range(200):
                if await count(database_url) == 16:
                    break
                await asyncio.sleep(0.05)
            assert await count(database_url) == 16
            inserts = registry.get_sample_value("gateway_ledger_inserts_total")
            if linger_ms:  # the first record alone, the rest after one linger (two at most)
                assert inserts is not None and inserts <= 3, inserts
            else:  # each read took what had just arrived
                assert inserts is not None and inserts > 3, inserts
        finally:
            await shipper.aclose()
            await db.aclose()
            await client.aclose()

    run(scenario)
