"""The sweep that gives back the reservations whose lease expired because their worker died."""

from __future__ import annotations

import asyncio
import logging

from gateway.store.port import Store, StoreError

logger = logging.getLogger("gateway.metering")


class LeaseSweeper:
    """Sweeps the store's expired leases now (``sweep``) or every ``interval_s`` (``run``)."""

    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self.interval_s = interval_s

    async def sweep(self) -> int:
        """Give back the reservations whose lease expired (their worker died); how many."""
        try:
            ended = await self._store.sweep_leases()
        except StoreError as exc:
            logger.debug("metering: lease sweep failed: %s", exc)
            return 0
        if ended:
            logger.warning(
                "metering: gave back %d reservations whose lease expired",
                ended,
                extra={"event": "leases_expired", "leases": ended},
            )
        return ended

    async def run(self) -> None:
        """The background loop, the first sweep at once."""
        while True:  # a restarted worker's expired leases come back now
            try:
                await self.sweep()
            except Exception:
                logger.exception("metering: lease sweep failed")
            await asyncio.sleep(self.interval_s)
