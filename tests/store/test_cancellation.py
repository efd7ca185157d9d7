"""A task cancelled while the store talks to Redis ends: redis-py 8.1's asyncio client returns
normally from some commands whose task was cancelled meanwhile, and a background loop over
them (shared breakers, rollups, control reads) then ran on and held the shutdown forever (a
``gateway serve`` was found idle minutes after SIGTERM, its breaker poll ``cancelling``)."""

from __future__ import annotations

import asyncio
import contextlib
import random

from gateway.config.model import Config
from gateway.store.factory import create_store
from gateway.store.port import Store, StoreError
from tests.metering.helpers import RedisServer, run

TRIES = 100


async def cancelled_loops_that_kept_running(store: Store) -> int:
    async def reads_forever() -> None:
        while True:
            with contextlib.suppress(StoreError):
                await store.read_hashes(["gw:cancel:probe"])

    alive = 0
    rng = random.Random(7)
    for _ in range(TRIES):
        task = asyncio.get_running_loop().create_task(reads_forever())
        await asyncio.sleep(rng.random() * 0.003)  # somewhere inside a command, mostly
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=1.0)
        alive += not done
    return alive


def test_a_loop_over_store_reads_ends_when_cancelled(
    config: Config, redis_server: RedisServer
) -> None:
    async def scenario() -> int:
        store = create_store(redis_server.url, config.settings)
        try:
            return await cancelled_loops_that_kept_running(store)
        finally:
            await store.aclose()

    assert run(scenario()) == 0
