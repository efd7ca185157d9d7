"""Two `gateway serve` processes shipping to one ledger, under load, through a gateway SIGKILLed
mid-shipping and a Postgres stopped and restarted: the test and ``bench/ledger_e2e.py`` share it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from redis.asyncio import Redis

from gateway.ledger import stream
from gateway.store import keys
from tests.ledger.pg_fixture import PostgresServer
from tests.scale.gateways import KEY, chat_body, gateways, write_config

CONCURRENCY = 48


@dataclass
class Outcome:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    rows: int = 0
    distinct_ids: int = 0
    rollup_requests: int = 0
    killed_with_pending: int = 0  # entries the SIGKILLed gateway held unacknowledged
    catch_up_s: float = 0.0  # from Postgres back to the ledger complete
    seconds: float = 0.0


async def load(urls: list[str], total: int, outcome: Outcome) -> None:
    """``total`` chat requests, CONCURRENCY at a time, round robin over ``urls``."""
    headers = {"authorization": f"Bearer {KEY}"}
    numbers = iter(range(total))

    async def worker(http: httpx.AsyncClient) -> None:
        for n in numbers:
            answer = await http.post(
                f"{urls[n % len(urls)]}/v1/chat/completions", headers=headers, json=chat_body()
            )
            outcome.statuses[answer.status_code] = outcome.statuses.get(answer.status_code, 0) + 1

    # no keep-alive: a pooled connection the server closed while idle (its header deadline
    # passes on a busy machine) would fail a request that never reached the gateway
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:
        await asyncio.gather(*(worker(http) for _ in range(CONCURRENCY)))
    outcome.sent += total


async def ledger_counts(url: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM usage_records) AS n,"
            " (SELECT count(DISTINCT request_id) FROM usage_records) AS d,"
            " (SELECT coalesce(sum(requests), 0) FROM usage_daily) AS r"
        )
        return int(row["n"]), int(row["d"]), int(row["r"])
    finally:
        await conn.close()


async def pending_of(client: Redis, pid: int) -> int:
    for consumer in await client.xinfo_consumers(keys.USAGE_STREAM, stream.GROUP):
        name = consumer["name"].decode()
        if f"-{pid}-" in name:
            return int(consumer["pending"])
    return 0


async def wait_complete(url: str, expected: int, timeout_s: float) -> int:
    deadline = time.monotonic() + timeout_s
    rows = 0
    while time.monotonic() < deadline:
        rows = (await ledger_counts(url))[0]
        if rows >= expected:
            return rows
        await asyncio.sleep(0.2)
    return rows


async def run(
    work: Path,
    upstream_url: str,
    redis_url: str,
    postgres: PostgresServer,
    database_url: str,
    total: int,
    outage_s: float,
) -> Outcome:
    outcome = Outcome()
    started = time.monotonic()
    config_dir = write_config(work, upstream_url, requests_per_day=10 * total)
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "GATEWAY_LEDGER_CLAIM_IDLE_MS": "1000",
        "GATEWAY_LEDGER_BATCH": "200",
    }
    redis = Redis.from_url(redis_url)
    try:
        with gateways(2, config_dir, env) as (a, b):
            urls = [a.url, b.url]
            await load(urls, total // 2, outcome)  # both shipping as they go
            postgres.stop()  # down under load: both keep serving
            down = time.monotonic()
            budget = total * 3 // 4  # what is sent by the end of the outage, at most
            chunk = max(1, total // 4 // max(1, int(outage_s)))
            while time.monotonic() - down < outage_s and outcome.sent < budget:
                await load(urls, min(chunk, budget - outcome.sent), outcome)
            while time.monotonic() - down < outage_s:
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # b's last settles reach the stream
            postgres.start()
            back = time.monotonic()
            for _ in range(2000):  # SIGKILL b while it holds a batch it has not acknowledged
                held = await pending_of(redis, b.process.pid)
                if held:
                    os.kill(b.process.pid, signal.SIGKILL)
                    b.process.wait()
                    outcome.killed_with_pending = held
                    break
                await asyncio.sleep(0.005)
            await load([a.url], total - outcome.sent, outcome)
            rows = await wait_complete(database_url, outcome.sent, 120)
            outcome.catch_up_s = round(time.monotonic() - back, 1)
            outcome.rows, outcome.distinct_ids, outcome.rollup_requests = await ledger_counts(
                database_url
            )
            assert rows == outcome.rows
    finally:
        await redis.aclose()
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome
