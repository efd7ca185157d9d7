"""CPU per shipped record: the shipper's (this process) and PostgreSQL's (all its processes).

    python bench/ledger_cpu.py [--batch 150] [--batches 40] [--rounds 3]

Starts a throwaway PostgreSQL and redis-server, then per batch XADDs ``--batch`` chat-like
records (``record_codec.encode`` of records as the settle builds them: 50 users, 3 models, a
tag on every fifth) to the usage stream and runs one ``Shipper.step``: read, rows, one insert
with its rollups, XACK. Only the step is counted: this process's CPU time around it (the
shipper's share, its Redis reads included) and the CPU time of every PostgreSQL process
(``/proc``: the postmaster's children, the postmaster's reaped children included). CPU time,
not wall-clock: other work on the machine slows a step but does not add to its CPU. Each
round uses a fresh database; the figures are per record, the median round's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.ledger.db import Database
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import encode
from gateway.store import keys
from tests.ledger.pg_fixture import PostgresServer
from tests.redis_fixture import RedisServer

TICKS = os.sysconf("SC_CLK_TCK")
MODELS = (("gpt-4o-mini", "openai"), ("claude-3-5-haiku", "anthropic"), ("llama-3.1-8b", "groq"))


def record(n: int, base: float, prefix: str) -> bytes:
    model, provider = MODELS[n % len(MODELS)]
    cost = (12 * 150 + 20 * 600) / 1e9
    return encode(
        UsageRecord(
            round(base + n / 1000, 3), f"{prefix}{n:x}", f"req-{prefix}-{n}", f"user{n % 50}",
            f"key{n % 50}", "free", "chat", model, provider, f"{model}-2024", 12 + n % 7,
            20 + n % 11, 0, 0, 0, cost, False, False, cost, 200, round(2.5 + n % 9 / 10, 1), 1,
            tags=("team-a",) if n % 5 == 0 else (),
        )
    )  # fmt: skip


def postgres_cpu(postmaster: int) -> float:
    """Seconds of CPU of the postmaster and its children (reaped ones included)."""
    total = 0.0
    for pid in [postmaster, *children(postmaster)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == postmaster:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / TICKS


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.data / "postmaster.pid").read_text().split()[0])


async def one_round(
    server: PostgresServer, redis_url: str, turn: int, batch: int, batches: int
) -> tuple[float, float]:
    name = f"cpu_{turn}_{os.getpid()}"
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = server.url.rsplit("/", 1)[0] + f"/{name}"
    client = Redis.from_url(redis_url)
    await client.delete(keys.USAGE_STREAM)
    db = Database(url)
    shipper = Shipper(LedgerSettings(database_url=url, batch=max(batch, 1000)), db, client)
    postmaster = postmaster_pid(server)
    base = time.time()
    mine = pg = 0.0
    counted = 0
    try:
        await shipper.maintain()
        await shipper.step(block_ms=1)
        for b in range(batches + 2):  # two warm batches (prepared statements, caches)
            async with client.pipeline(transaction=False) as pipe:
                for n in range(b * batch, (b + 1) * batch):
                    pipe.xadd(keys.USAGE_STREAM, {"r": record(n, base, f"{turn}x")})
                await pipe.execute()
            await asyncio.sleep(0.05)  # let Postgres's background writers settle
            pg0, mine0 = postgres_cpu(postmaster), time.process_time()
            shipped = await shipper.step(block_ms=1)
            mine1, pg1 = time.process_time(), postgres_cpu(postmaster)
            assert shipped == batch, shipped
            if b >= 2:
                mine += mine1 - mine0
                pg += pg1 - pg0
                counted += batch
    finally:
        await db.aclose()
        await client.aclose()
    return mine / counted * 1e6, pg / counted * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=150)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    postgres = PostgresServer().start()
    redis = RedisServer().start()
    try:
        results = []
        for turn in range(args.rounds):
            shipper_us, pg_us = asyncio.run(
                one_round(postgres, redis.url, turn, args.batch, args.batches)
            )
            print(f"round {turn}: shipper {shipper_us:.1f} us/record, postgres {pg_us:.1f}")
            results.append((shipper_us + pg_us, shipper_us, pg_us))
        _, shipper_us, pg_us = statistics.median_low(results)
        print(
            f"ledger_cpu batch={args.batch} shipper_us={shipper_us:.1f} postgres_us={pg_us:.1f}"
            f" total_us={shipper_us + pg_us:.1f}"
        )
    finally:
        redis.close()
        postgres.close()


if __name__ == "__main__":
    main()
