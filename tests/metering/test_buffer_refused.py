"""A usage record the store refuses is dropped alone: the level usage it carried is kept."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import cast

from gateway.metering.buffer import Flusher, UsageBuffer
from gateway.metering.health import StoreHealth
from gateway.metering.settle import Settlement
from gateway.store.port import SettleBatch, SharedAggregate, Store, StoreRejected

LEVELS = SharedAggregate(("gw:{tm:t}:min:1", "gw:{tm:t}:h:1"), (60, 3600), ("req",), (2,))


class RefusesBad:
    """A store whose settle refuses any call holding the record ``b"bad"``."""

    def __init__(self) -> None:
        self.written: list[SettleBatch] = []

    async def settle(self, batches: Sequence[SettleBatch], batch_id: str = "") -> list[list[int]]:
        if any(batch.record == b"bad" for batch in batches):
            raise StoreRejected("bad record")
        self.written += batches
        return [[] for _ in batches]


def test_a_refused_record_keeps_the_level_usage_it_carried() -> None:
    logger = logging.getLogger("test.buffer")
    store = RefusesBad()
    buffer = UsageBuffer(100, logger)
    bad = SettleBatch((), b"bad", shared=(LEVELS,))  # sealed with other requests' level usage
    buffer.add(Settlement(bad, (), None))
    buffer.add(Settlement(SettleBatch((), b"good"), (), None))

    async def nothing(items: Sequence[Settlement], results: list[list[int]]) -> None:
        return None

    flusher = Flusher(buffer, cast(Store, store), StoreHealth(logger), nothing, logger)
    assert asyncio.run(flusher.flush_once())
    assert flusher.quarantined == 1 and len(flusher) == 0
    assert [batch.record for batch in store.written] == [None, b"good"]
    assert store.written[0].shared == (LEVELS,)
