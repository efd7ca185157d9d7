"""The ledger's commands: ``gateway db upgrade`` and ``gateway ledger ship`` (a shipper alone)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.ledger import migrate, partitions
from gateway.ledger.db import Database, connect
from gateway.ledger.metrics import LedgerMetrics
from gateway.ledger.reader import read_records
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.metering.record import UsageRecord

log = logging.getLogger("gateway.ledger")


async def upgrade(settings: LedgerSettings) -> list[str]:
    """Apply pending migrations and create the partitions ahead; the migrations applied."""
    assert settings.database_url is not None
    conn = await connect(settings.database_url, timeout=10)
    try:
        done = await migrate.upgrade(conn)
        today = dt.datetime.now(dt.UTC).date()
        await partitions.ensure_ahead(conn, today, settings.partitions_ahead)
        return done
    finally:
        await conn.close()


async def ship_forever(
    settings: LedgerSettings, redis: Any, registry: CollectorRegistry | None = None
) -> None:
    """Run one shipper until cancelled (Ctrl-C or SIGTERM); its metrics on ``registry``."""
    database = Database(settings.database_url or "")
    metrics = LedgerMetrics(registry) if registry is not None else None
    shipper = Shipper(settings, database, redis, metrics=metrics)
    await shipper.start()
    try:
        while True:
            await asyncio.sleep(10)
            log.info("ledger: shipped %d rows, lag %s", shipper.shipped, shipper.lag)
    finally:
        await shipper.aclose()
        await database.aclose()


def records_reader(
    settings: LedgerSettings,
) -> Callable[..., Awaitable[list[UsageRecord]]]:
    """A one-shot reader of the ledger's records (for ``gateway usage export``)."""

    async def read(
        user: str | None, start: float, end: float, skip: int = 0, limit: int | None = None
    ) -> list[UsageRecord]:
        database = Database(settings.database_url or "", size=1)
        try:
            return await read_records(database, user, start, end, skip=skip, limit=limit)
        finally:
            await database.aclose()

    return read
