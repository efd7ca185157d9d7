"""The in-process store used when ``REDIS_URL`` is unset: one process, same semantics.

Each operation runs without awaiting, so on one event loop it is atomic like the Lua script.
Expired keys are dropped lazily, on access, by the store's own clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from gateway.metering.decide import decide
from gateway.metering.store import Counter, SettleBatch, Verdict


class MemoryStore:
    """``Store`` in dictionaries; usage records in a bounded deque."""

    def __init__(self, *, stream_maxlen: int, clock: Callable[[], float] = time.time) -> None:
        self._hashes: dict[str, dict[str, int]] = {}
        self._expiry: dict[str, float] = {}
        self._records: deque[tuple[int, bytes]] = deque(maxlen=stream_maxlen)
        self._next_id = 1
        self._clock = clock

    async def reserve(self, counters: Sequence[Counter], override_key: str | None) -> Verdict:
        overrides = self._hash(override_key) if override_key else {}
        used = [self._hash(c.key).get(c.field, 0) for c in counters]
        verdict = decide(counters, used, overrides)
        if verdict.ok:
            for counter, amount in zip(counters, verdict.granted, strict=True):
                self._incr(counter.key, counter.field, amount, counter.ttl_s)
        return verdict

    async def settle(self, batches: Sequence[SettleBatch]) -> list[list[int]]:
        watched: list[list[int]] = []
        for batch in batches:
            values = []
            for inc in batch.all_increments():
                value = self._incr(inc.key, inc.field, inc.delta, inc.ttl_s)
                if inc.watch:
                    values.append(value)
            if batch.record is not None:
                self._records.append((self._next_id, batch.record))
                self._next_id += 1
            watched.append(values)
        return watched

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, int]]:
        return [dict(self._hash(key)) for key in keys]

    async def write_hash(self, key: str, values: Mapping[str, int], delete: Sequence[str]) -> None:
        target = self._hashes.setdefault(key, {})
        for field in delete:
            target.pop(field, None)
        target.update(values)

    async def set_once(self, key: str, ttl_s: int) -> bool:
        if self._hash(key):
            return False
        self._incr(key, "set", 1, ttl_s)
        return True

    async def records_page(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        limit = int(before) if before else self._next_id
        page: list[tuple[str, bytes]] = []
        for record_id, record in reversed(self._records):
            if record_id < limit:
                page.append((str(record_id), record))
                if len(page) >= count:
                    break
        return page

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _hash(self, key: str) -> dict[str, int]:
        expires = self._expiry.get(key)
        if expires is not None and expires <= self._clock():
            self._hashes.pop(key, None)
            self._expiry.pop(key, None)
        return self._hashes.get(key, {})

    def _incr(self, key: str, field: str, delta: int, ttl_s: int) -> int:
        target = self._hash(key) or self._hashes.setdefault(key, {})
        target[field] = target.get(field, 0) + delta
        if ttl_s:
            self._expiry[key] = self._clock() + ttl_s
        return target[field]
