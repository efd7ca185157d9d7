"""Video job records in the store: one hash per owner (job id → JSON), kept for a TTL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from gateway.store import keys
from gateway.store.port import Store


class JobStore(Protocol):
    async def put(self, owner: str, job_id: str, record: dict[str, Any], ttl_s: int) -> None: ...

    async def get(self, owner: str, job_id: str) -> dict[str, Any] | None: ...

    async def list(self, owner: str) -> list[dict[str, Any]]: ...

    async def settle_once(self, owner: str, job_id: str, ttl_s: int) -> bool:
        """True for the first caller only: the one that settles the job's metering."""
        ...

    async def heartbeat(self, owner: str, job_id: str, now: float) -> None:
        """Note that a worker is watching this unsettled job (``now``: epoch seconds)."""
        ...

    async def close(self, owner: str, job_id: str) -> None:
        """The job is settled: nobody needs to watch it any more."""
        ...

    async def open_jobs(self) -> dict[tuple[str, str], float]:
        """(owner, job id) → last heartbeat, for every unsettled job."""
        ...


class StoreJobStore:
    """Job records as documents of the metering store, under the owner's hash tag (one
    Redis Cluster slot per user); a record past its ``expires_at`` is not shown (the owner's
    hash itself expires ``ttl_s`` after its last write)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def put(self, owner: str, job_id: str, record: dict[str, Any], ttl_s: int) -> None:
        await self._store.put_document(
            keys.user_video_jobs(owner), job_id, orjson.dumps(record), ttl_s
        )

    async def get(self, owner: str, job_id: str) -> dict[str, Any] | None:
        raw = await self._store.get_document(keys.user_video_jobs(owner), job_id)
        return _live(raw, self._clock())

    async def list(self, owner: str) -> list[dict[str, Any]]:
        raw = await self._store.documents(keys.user_video_jobs(owner))
        now = self._clock()
        return [record for value in raw if (record := _live(value, now)) is not None]

    async def settle_once(self, owner: str, job_id: str, ttl_s: int) -> bool:
        return await self._store.set_once(keys.video_job_settled(owner, job_id), ttl_s)

    async def heartbeat(self, owner: str, job_id: str, now: float) -> None:
        await self._store.write_hash(
            keys.video_jobs_open(), {f"{job_id}\t{owner}": int(now * 1000)}, ()
        )

    async def close(self, owner: str, job_id: str) -> None:
        await self._store.write_hash(keys.video_jobs_open(), {}, (f"{job_id}\t{owner}",))

    async def open_jobs(self) -> dict[tuple[str, str], float]:
        (stored,) = await self._store.read_hashes([keys.video_jobs_open()])
        jobs = {}
        for field, ms in stored.items():
            job_id, _, owner = field.partition("\t")
            jobs[owner, job_id] = ms / 1000
        return jobs


def _live(raw: bytes | None, now: float) -> dict[str, Any] | None:
    if raw is None:
        return None
    record = orjson.loads(raw)
    return record if isinstance(record, dict) and record.get("expires_at", now + 1) > now else None


def job_store_for(store: Store) -> JobStore:
    """The job records beside the usage counters: the same Redis, or process memory."""
    return StoreJobStore(store)
