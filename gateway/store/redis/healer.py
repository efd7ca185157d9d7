"""Replacing a redis-py cluster client that keeps failing with a fresh one.

redis-py's asyncio cluster client can stay broken after connection errors although every node
answers: connections stranded in a node's pool (redis/redis-py#4110, and the deferred release
of #4247) make each later command fail with ``MaxConnectionsError``, and only a new client
recovers. A process's hot path runs on its own slot-routed connections, but the dashboard's
rollups, the control plane and the usage reads use this client. After ``FAILURES`` failures in
a row (none of them the call's own fault) the store builds a new client; at most once per
``INTERVAL_S``, so an outage of the whole cluster does not churn clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster

logger = logging.getLogger("gateway.metering")

FAILURES = 3
INTERVAL_S = 5.0
CLOSE_TIMEOUT_S = 5.0


class ClientHealer:
    """Counts the client's failures in a row and says when to replace it."""

    def __init__(
        self,
        build: Callable[[], RedisCluster],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._build = build
        self._clock = clock
        self._failures = 0
        self._last_rebuild = -INTERVAL_S
        self._closing: set[asyncio.Task[None]] = set()

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self, client: RedisCluster) -> RedisCluster | None:
        """A new client when ``client`` has failed often enough (the old one is closed in
        the background), else None."""
        self._failures += 1
        now = self._clock()
        if self._failures < FAILURES or now - self._last_rebuild < INTERVAL_S:
            return None
        self._failures, self._last_rebuild = 0, now
        logger.warning("redis cluster client: %d failures in a row, replacing it", FAILURES)
        task = asyncio.get_running_loop().create_task(_close(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return self._build()


async def _close(client: RedisCluster) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.aclose(), CLOSE_TIMEOUT_S)
