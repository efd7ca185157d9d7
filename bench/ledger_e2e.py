"""The ledger's done-when run: 10,000 requests through two gateway processes, one SIGKILLed
mid-shipping, Postgres stopped 10 s under load → exactly one row per request (docs/ledger.md).

    python bench/ledger_e2e.py [--requests 10000] [--outage 10]

The same scenario as tests/ledger/test_e2e.py (which sends 2,000 in CI).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ledger.pg_fixture import PostgresServer
from tests.ledger.scenario import run
from tests.mock_upstream import running_mock_upstream
from tests.redis_fixture import RedisServer


async def create_database(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE DATABASE ledger_e2e")
    finally:
        await conn.close()
    return url.rsplit("/", 1)[0] + "/ledger_e2e"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--outage", type=float, default=10.0, help="seconds Postgres is down")
    args = parser.parse_args()
    postgres = PostgresServer().start()
    redis = RedisServer().start()
    try:
        database_url = asyncio.run(create_database(postgres.url))
        with running_mock_upstream() as upstream, tempfile.TemporaryDirectory() as work:
            outcome = asyncio.run(
                run(
                    Path(work),
                    upstream.base_url,
                    redis.url,
                    postgres,
                    database_url,
                    args.requests,
                    args.outage,
                )
            )
        print(outcome)
        ok = outcome.rows == outcome.sent == outcome.distinct_ids == args.requests
        print("PASS" if ok and outcome.killed_with_pending else "FAIL")
    finally:
        redis.close()
        postgres.close()


if __name__ == "__main__":
    main()
