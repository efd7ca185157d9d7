"""Breaker openings shared through the store, so every replica skips a failing model at once.

A replica whose breaker opens writes ``model → open until`` (epoch milliseconds) into one
hash; every replica reads that hash every ``POLL_INTERVAL_S`` and treats a model as open
until then, closed again afterwards (each replica's own breaker then probes it as usual). No
Redis round trip is added to a request: the poll runs in the background. When the store is
down, the last openings read expire on their own and each replica keeps its own breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gateway.store.port import Store, StoreError

KEY = "gw:breakers"
POLL_INTERVAL_S = 0.5
FORGET_AFTER_S = 3600.0  # openings older than this are deleted from the hash by the next write
logger = logging.getLogger("gateway.proxy")


class SharedHealth:
    """``publish`` (a ``Breakers`` ``on_open``) and ``is_open`` (its ``shared_open``)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = POLL_INTERVAL_S,
    ) -> None:
        self._store = store
        self._clock = clock
        self._interval = poll_interval_s
        self._open_until: dict[str, float] = {}  # model → epoch seconds
        self._task: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def is_open(self, model: str) -> bool:
        until = self._open_until.get(model)
        return until is not None and self._clock() < until

    def publish(self, model: str, cooldown_s: float) -> None:
        """Tell the other replicas (in the background: the request does not wait)."""
        until = self._clock() + cooldown_s
        with contextlib.suppress(RuntimeError):  # no running loop: nobody to tell
            task = asyncio.get_running_loop().create_task(self._write(model, until))
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._writes) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh(self) -> None:
        """Read the openings once (the poll's step)."""
        try:
            (stored,) = await self._store.read_hashes([KEY])
        except StoreError as exc:
            logger.debug("shared breakers: read failed: %s", exc)
            return
        self._open_until = {model: ms / 1000 for model, ms in stored.items()}

    async def _poll(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self._interval)

    async def _write(self, model: str, until: float) -> None:
        now = self._clock()
        stale = [m for m, t in self._open_until.items() if t < now - FORGET_AFTER_S]
        try:
            await self._store.write_hash(KEY, {model: int(until * 1000)}, stale)
        except StoreError as exc:
            logger.debug("shared breakers: publishing %s failed: %s", model, exc)
            return
        self._open_until[model] = max(until, self._open_until.get(model, 0.0))
