"""Video job records in the store: one hash per owner (job id → JSON), kept for a TTL."""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson

from gateway.metering.store import Store

KEY_PREFIX = "gw:videojobs:"


class JobStore(Protocol):
    async def put(self, owner: str, job_id: str, record: dict[str, Any], ttl_s: int) -> None: ...

    async def get(self, owner: str, job_id: str) -> dict[str, Any] | None: ...

    async def list(self, owner: str) -> list[dict[str, Any]]: ...


class RedisJobStore:
    """On the metering store's Redis client; a record past its ``expires_at`` is not shown
    (the owner's hash itself expires ``ttl_s`` after its last write)."""

    def __init__(self, client: Any, clock: Any = time.time) -> None:
        self._client = client
        self._clock = clock

    async def put(self, owner: str, job_id: str, record: dict[str, Any], ttl_s: int) -> None:
        key = KEY_PREFIX + owner
        await self._client.hset(key, job_id, orjson.dumps(record))
        await self._client.expire(key, ttl_s)

    async def get(self, owner: str, job_id: str) -> dict[str, Any] | None:
        raw = await self._client.hget(KEY_PREFIX + owner, job_id)
        return _live(raw, self._clock())

    async def list(self, owner: str) -> list[dict[str, Any]]:
        raw = await self._client.hvals(KEY_PREFIX + owner)
        now = self._clock()
        return [record for value in raw if (record := _live(value, now)) is not None]


class MemoryJobStore:
    def __init__(self, clock: Any = time.time) -> None:
        self._jobs: dict[str, dict[str, bytes]] = {}
        self._clock = clock

    async def put(self, owner: str, job_id: str, record: dict[str, Any], ttl_s: int) -> None:
        self._jobs.setdefault(owner, {})[job_id] = orjson.dumps(record)

    async def get(self, owner: str, job_id: str) -> dict[str, Any] | None:
        return _live(self._jobs.get(owner, {}).get(job_id), self._clock())

    async def list(self, owner: str) -> list[dict[str, Any]]:
        now = self._clock()
        values = self._jobs.get(owner, {}).values()
        return [record for value in values if (record := _live(value, now)) is not None]


def _live(raw: bytes | None, now: float) -> dict[str, Any] | None:
    if raw is None:
        return None
    record = orjson.loads(raw)
    return record if isinstance(record, dict) and record.get("expires_at", now + 1) > now else None


def job_store_for(store: Store) -> JobStore:
    """The job records beside the usage counters: the same Redis, or process memory."""
    client = getattr(store, "_client", None)  # RedisStore's redis-py client (no new pool)
    return MemoryJobStore() if client is None else RedisJobStore(client)
