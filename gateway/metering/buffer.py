"""Usage writes held in memory while the store is unreachable, and the task that flushes them.

The buffer is bounded (``Settings.usage_buffer_max``): when full, the oldest entry is dropped
and counted. The flusher writes entries in order, in chunks of one pipeline each, retrying
with exponential backoff until the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from gateway.metering.health import StoreHealth
from gateway.metering.settle import Settlement
from gateway.metering.store import Store, StoreError

CHUNK = 200  # requests per store call; bounds how long one settle script runs
BACKOFF_S = 0.1
GATHER_S = 0.005
MAX_BACKOFF_S = 2.0

Written = Callable[[Sequence[Settlement], list[list[int]]], Awaitable[None]]


class UsageBuffer:
    def __init__(self, max_items: int, logger: logging.Logger) -> None:
        self._items: deque[Settlement] = deque()
        self._max = max_items
        self._logger = logger
        self.dropped = 0
        self.wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Settlement) -> None:
        if len(self._items) >= self._max:
            self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                self._logger.error(
                    "usage buffer full (%d): dropped %d records so far", self._max, self.dropped
                )
        self._items.append(item)
        self.wake.set()

    def head(self, count: int) -> list[Settlement]:
        return [self._items[i] for i in range(min(count, len(self._items)))]

    def remove_head(self, count: int) -> None:
        for _ in range(min(count, len(self._items))):
            self._items.popleft()


class Flusher:
    """Writes the buffer to the store; ``run()`` is the background loop."""

    def __init__(
        self, buffer: UsageBuffer, store: Store, health: StoreHealth, written: Written
    ) -> None:
        self._buffer = buffer
        self._store = store
        self._health = health
        self._written = written
        self._lock = asyncio.Lock()  # one writer at a time: a chunk is removed once written

    async def run(self) -> None:
        backoff = BACKOFF_S
        while True:
            await self._buffer.wake.wait()
            if len(self._buffer) < CHUNK:
                # Let a few more requests finish so they share one store call; the settle is
                # off the request path, and reservations hold their place meanwhile.
                await asyncio.sleep(GATHER_S)
            if await self.flush_once():
                backoff = BACKOFF_S
                if not self._buffer:
                    self._buffer.wake.clear()
            else:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def flush_once(self) -> bool:
        """Write one chunk; False when the store failed."""
        async with self._lock:
            chunk = self._buffer.head(CHUNK)
            if not chunk:
                return True
            try:
                results = await self._store.settle([item.batch for item in chunk])
            except StoreError as exc:
                self._health.failed(exc)
                return False
            self._buffer.remove_head(len(chunk))
        self._health.recovered()
        await self._written(chunk, results)
        return True

    async def drain(self, timeout_s: float) -> bool:
        """Flush everything within ``timeout_s``; True when the buffer is empty."""
        deadline = time.monotonic() + timeout_s
        backoff = BACKOFF_S
        while self._buffer and time.monotonic() < deadline:
            if not await self.flush_once():
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return not self._buffer
