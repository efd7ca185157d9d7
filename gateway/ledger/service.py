"""``Ledger``: the ledger's parts in one gateway process (database, shipper, reads)."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry

from gateway.ledger.db import Database
from gateway.ledger.metrics import LedgerMetrics
from gateway.ledger.reader import read_records
from gateway.ledger.settings import LedgerSettings
from gateway.ledger.shipper import Shipper
from gateway.metering.record import UsageRecord

log = logging.getLogger("gateway.ledger")


class Ledger:
    """Present only when ``DATABASE_URL`` is set; ``shipper`` None when this process does
    not ship (``GATEWAY_LEDGER_SHIP=0``, or no Redis stream to ship from)."""

    source = "postgres"

    def __init__(
        self, settings: LedgerSettings, redis: Any, registry: CollectorRegistry | None
    ) -> None:
        assert settings.database_url is not None
        self.settings = settings
        self.database = Database(settings.database_url)
        self.metrics = LedgerMetrics(registry) if registry is not None else None
        self.shipper: Shipper | None = None
        if redis is None:
            log.warning("ledger: no Redis usage stream (REDIS_URL unset): nothing is shipped")
        elif settings.ship:
            self.shipper = Shipper(settings, self.database, redis, metrics=self.metrics)

    async def start(self) -> None:
        if self.shipper is not None:
            await self.shipper.start()

    async def aclose(self) -> None:
        if self.shipper is not None:
            await self.shipper.aclose()
        await self.database.aclose()

    async def records(
        self, user: str | None, start: float, end: float, skip: int = 0, limit: int | None = None
    ) -> list[UsageRecord]:
        return await read_records(self.database, user, start, end, skip=skip, limit=limit)

    def status(self) -> dict[str, Any]:
        """For ``/readyz``: the shipper's lag and Postgres as it last saw it."""
        if self.shipper is None:
            return {"shipping": False}
        return {"shipping": True, **self.shipper.status()}
