"""Usage writes held in memory while the store is unreachable, and the task that flushes them.

The buffer is bounded (``Settings.usage_buffer_max``): when full, the oldest entry is dropped
and counted. The flusher writes entries in order, in chunks of one store call each, retrying
with exponential backoff until the store answers again. A chunk keeps its batch id until it
is written, so a retry after a lost reply is recognised by the store and not applied twice.
A chunk the store refuses (``StoreRejected``: one bad record) is split in halves, each under a
new id (a refused call wrote nothing), until the bad record is alone; it is then dropped and
logged with its record, and every other record is written (and the level usage it carried
for other requests, ``allowance_writes.seal``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import orjson

from gateway.metering.health import StoreHealth
from gateway.metering.settle import Settlement
from gateway.store.port import SettleBatch, Store, StoreError, StoreRejected

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
            oldest = self._items.popleft()
            if oldest.sealed is not None:  # the grants its levels' usage used up still end
                self._items.extendleft(reversed(_settlements(oldest.sealed())))
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                self._logger.error(
                    "usage buffer full (%d): dropped %d records so far", self._max, self.dropped
                )
        self._items.append(item)
        self.wake.set()

    def take(self, count: int) -> list[Settlement]:
        """Remove and return up to ``count`` of the oldest entries (each ``sealed`` first)."""
        taken: list[Settlement] = []
        items = self._items
        while items and len(taken) < count:
            item = items.popleft()
            taken.append(item)
            if item.sealed is not None:  # the grants used up end in the same store call
                taken += _settlements(item.sealed())
        return taken


def _settlements(batches: list[SettleBatch]) -> list[Settlement]:
    return [Settlement(batch, (), None) for batch in batches]


class Flusher:
    """Writes the buffer to the store; ``run()`` is the background loop."""

    def __init__(
        self,
        buffer: UsageBuffer,
        store: Store,
        health: StoreHealth,
        written: Written,
        logger: logging.Logger,
    ) -> None:
        self._buffer = buffer
        self._store = store
        self._health = health
        self._written = written
        self._logger = logger
        self._lock = asyncio.Lock()  # one writer at a time
        # chunks taken from the buffer and not yet written, each with its batch id
        self._pending: deque[tuple[str, list[Settlement]]] = deque()
        self._prefix = secrets.token_hex(6)
        self._numbers = itertools.count()
        self.quarantined = 0

    def __len__(self) -> int:
        """Entries not yet written: buffered or taken."""
        return len(self._buffer) + sum(len(chunk) for _, chunk in self._pending)

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
        """Write one chunk (split when refused); False when the store failed."""
        async with self._lock:
            if not self._pending:
                chunk = self._buffer.take(CHUNK)
                if not chunk:
                    return True
                self._pending.append((self._batch_id(), chunk))
            written: list[Settlement] = []
            results: list[list[int]] = []
            while self._pending:
                batch_id, chunk = self._pending[0]
                try:
                    replies = await self._store.settle([item.batch for item in chunk], batch_id)
                except StoreRejected as exc:
                    self._pending.popleft()
                    self._split(chunk, exc)
                    continue
                except StoreError as exc:
                    self._health.failed(exc)
                    return False
                self._pending.popleft()
                written += chunk
                results += replies
        self._health.recovered()
        await self._written(written, results)
        return True

    def _split(self, chunk: list[Settlement], error: StoreError) -> None:
        """Halves of a refused chunk go first; a refused single record is dropped."""
        if len(chunk) == 1:
            self.quarantined += 1
            self._logger.error(
                "metering: the store refused a usage record, dropped: %s: %s",
                error,
                _logged(chunk[0]),  # in full, as the readers see it
                extra={"event": "usage_record_refused"},
            )
            shared = chunk[0].batch.shared  # other requests' level usage it carried: kept
            if shared:
                carried = Settlement(SettleBatch((), shared=shared), (), None)
                self._pending.appendleft((self._batch_id(), [carried]))
            return
        half = len(chunk) // 2
        self._pending.extendleft(
            [(self._batch_id(), chunk[half:]), (self._batch_id(), chunk[:half])]
        )

    def _batch_id(self) -> str:
        return f"{self._prefix}.{next(self._numbers)}"

    async def drain(self, timeout_s: float) -> bool:
        """Flush everything within ``timeout_s``; True when the buffer is empty."""
        deadline = time.monotonic() + timeout_s
        backoff = BACKOFF_S
        while len(self) and time.monotonic() < deadline:
            if not await self.flush_once():
                await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        return not len(self)


def _logged(item: Settlement) -> str:
    return orjson.dumps(item.record.as_dict() if item.record else {}).decode()
