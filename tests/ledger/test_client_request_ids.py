"""Issue 23 #3: requests that reuse one client-sent X-Request-Id each keep their usage.

Before: the ledger's key was (day, request_id, ts in ms) with ON CONFLICT DO NOTHING, so
concurrent requests sent with one id in the same millisecond kept one row (200 answers,
87 rows). Rows are now keyed by the record's own gateway-generated id.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import asyncpg
import httpx
import orjson
import pytest
from redis import Redis

from gateway.config.runtime import Runtime
from gateway.ledger import migrate, partitions, writer
from gateway.ledger.rows import parse
from gateway.store import keys
from tests.conftest import StartGateway
from tests.redis_fixture import RedisServer

SENT = 200
CLIENT_ID = "same-id-for-everyone"
BODY = {"model": "text", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}


async def chats(url: str, key: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=SENT, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        return await asyncio.gather(
            *(
                http.post(
                    "/v1/chat/completions",
                    headers={"authorization": f"Bearer {key}", "x-request-id": CLIENT_ID},
                    json=BODY,
                )
                for _ in range(SENT)
            )
        )


async def rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(
            "SELECT record_id, request_id, prompt_tokens, completion_tokens FROM usage_records"
        )
    finally:
        await conn.close()


def test_one_client_id_many_requests_every_row_kept(
    start_gateway: StartGateway,
    redis: RedisServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    running = start_gateway(runtime=Runtime(redis_url=redis.url), store=None)
    answers = asyncio.run(chats(running.url, running.key()))
    assert [a.status_code for a in answers] == [200] * SENT
    assert {a.headers["x-request-id"] for a in answers} == {CLIENT_ID}
    found: list[asyncpg.Record] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = asyncio.run(rows(database_url))
        if len(found) >= SENT:
            break
        time.sleep(0.2)
    assert len(found) == SENT
    assert {row["request_id"] for row in found} == {CLIENT_ID}  # the client's id, kept
    assert len({row["record_id"] for row in found}) == SENT
    day = datetime.now(UTC).strftime("%Y%m%d")
    counters = Redis(port=redis.port).hgetall(keys.user_day("user-free", day))
    assert int(counters[b"text_generation:req"]) == SENT
    tokens = sum(row["prompt_tokens"] + row["completion_tokens"] for row in found)
    assert int(counters[b"text_generation:tok"]) == tokens


def test_rows_stored_before_migration_0004_keep_their_key(database_url: str) -> None:
    """A record shipped before the upgrade, and again after it (from the stream, in the full
    form without a record_id), is stored once; other rows keep their own ids."""
    stamp = 1_795_348_800.123
    legacy = orjson.dumps({"ts": stamp, "request_id": "r1", "user": "alice", "status": 200})

    async def scenario() -> None:
        conn = await asyncpg.connect(database_url)
        try:
            for version, _, sql in migrate.migrations():
                if version < 4:
                    await conn.execute(sql)
            await partitions.ensure(conn, [datetime.fromtimestamp(stamp, UTC).date()])
            await conn.execute(
                "INSERT INTO usage_records (day, ts, request_id, user_id, record)"
                " VALUES ($1, $2, 'r1', 'alice', '{}'::jsonb)",
                datetime.fromtimestamp(stamp, UTC).date(),
                datetime.fromtimestamp(stamp, UTC),
            )
            await conn.execute(
                "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.executemany(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                [(v, name) for v, name, _ in migrate.migrations() if v < 4],
            )
            assert await migrate.upgrade(conn) == ["0004_record_ids.sql", "0005_org_team.sql"]
            assert await conn.fetchval("SELECT record_id FROM usage_records") == "r1@1795348800123"
            again = parse("1-0", legacy)
            assert again is not None and again.record_id == "r1@1795348800123"
            assert await writer.insert(conn, [again]) == 0
            compact = {"t": 1_795_348_800_123, "i": "new.1", "q": "r1", "u": "alice"}
            fresh = parse("2-0", orjson.dumps(compact))  # same client id and ms: another row
            assert fresh is not None and await writer.insert(conn, [fresh]) == 1
        finally:
            await conn.close()

    asyncio.run(scenario())
