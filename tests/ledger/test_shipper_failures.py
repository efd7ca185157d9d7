"""``gateway_ledger_failures_total`` by kind: the shipper counts a PostgreSQL it cannot reach,
a Redis it cannot reach, and an unexpected error (which it used to log without counting)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from gateway.ledger.db import Database
from gateway.ledger.metrics import LedgerMetrics
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from tests.redis_fixture import RedisServer, free_port

NAME = "gateway_ledger_failures_total"


def failures_while_shipping(make_redis: Callable[[], Any], kind: str) -> dict[str, float]:
    """Every kind's count once the shipper, started on ``make_redis()`` and a PostgreSQL that
    is not there, has counted a failure of ``kind``."""
    registry = CollectorRegistry()

    def counts() -> dict[str, float]:
        return {
            k: registry.get_sample_value(NAME, {"kind": k}) or 0.0
            for k in ("postgres", "redis", "unexpected")
        }

    async def scenario() -> dict[str, float]:
        url = f"postgresql://gateway:x@127.0.0.1:{free_port()}/ledger"  # nothing listens there
        db, redis = Database(url), make_redis()
        shipper = Shipper(
            LedgerSettings(database_url=url), db, redis, metrics=LedgerMetrics(registry)
        )
        await shipper.start()
        try:
            for _ in range(500):  # a bound, not a timing
                if counts()[kind]:
                    return counts()
                await asyncio.sleep(0.02)
            raise AssertionError(f"no {kind} failure counted: {counts()}")
        finally:
            await shipper.aclose()
            await db.aclose()
            if isinstance(redis, Redis):
                await redis.aclose()

    return asyncio.run(scenario())


def test_postgres_unreachable_counts_as_postgres(redis: RedisServer) -> None:
    counted = failures_while_shipping(lambda: Redis.from_url(redis.url), "postgres")
    assert counted["postgres"] >= 1 and counted["redis"] == counted["unexpected"] == 0


def test_redis_unreachable_counts_as_redis() -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    counted = failures_while_shipping(lambda: Redis.from_url(nowhere), "redis")
    assert counted["redis"] >= 1 and counted["postgres"] == counted["unexpected"] == 0


def test_an_unexpected_error_is_counted_too() -> None:
    counted = failures_while_shipping(object, "unexpected")  # not a Redis client at all
    assert counted["unexpected"] == 1 and counted["postgres"] == counted["redis"] == 0
