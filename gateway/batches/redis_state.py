"""``BatchState`` in Redis, shared by the replicas.

One stream per batch, read through one consumer group (``gateway.store.redis.consumer_group``,
as the ledger's shipper reads the usage stream): XREADGROUP for new entries, XAUTOCLAIM for a
dead consumer's, XACK once a line is answered.

Every key of a batch carries the hash tag ``{b:<id>}`` (one Cluster slot), so ``begin`` and
``finish`` are single scripts: the check and the write of a line are atomic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.batches.records import Progress
from gateway.batches.state import Entry, progress_from
from gateway.store.redis import consumer_group

GROUP = "runners"
ENQUEUE_CHUNK = 1000
FINISHED_TTL_S = 7 * 24 * 3600

# KEYS: results, running, progress. ARGV: line, consumer. → "" (done) or the line's runner.
BEGIN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return '' end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'started', 1)
  return ARGV[2]
end
return redis.call('HGET', KEYS[2], ARGV[1])
"""
# KEYS: running, progress. ARGV: line.
RELEASE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then redis.call('HINCRBY', KEYS[2], 'started', -1) end
return 0
"""
# KEYS: results, progress. ARGV: line, result, "completed" | "failed". → 1 if written.
FINISH = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[2], 'done', 1)
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
return 1
"""

# KEYS: lines (the stream). ARGV: group, entry id, line. Queued again only if it was pending.
REQUEUE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[1], '*', 'l', ARGV[3])
end
return 0
"""


def _key(batch_id: str, part: str) -> str:
    return f"gw:{{b:{batch_id}}}:{part}"


class RedisBatchState:
    def __init__(self, client_of: Callable[[], Any]) -> None:
        """``client_of``: the store's current redis-py client (a cluster store replaces it)."""
        self._client_of = client_of
        self._scripts: dict[str, Any] = {}

    @property
    def _redis(self) -> Any:
        return self._client_of()

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        registered = self._scripts.get(script)
        if registered is None:
            registered = self._scripts[script] = self._redis.register_script(script)
        return await registered(keys=keys, args=args)

    async def enqueue(self, batch_id: str, lines: int) -> None:
        stream = _key(batch_id, "lines")
        await consumer_group.ensure(self._redis, stream, GROUP)
        for start in range(0, lines, ENQUEUE_CHUNK):
            async with self._redis.pipeline(transaction=False) as pipe:
                for line in range(start, min(lines, start + ENQUEUE_CHUNK)):
                    pipe.xadd(stream, {"l": line})
                await pipe.execute()

    async def read(self, batch_id: str, consumer: str, count: int) -> list[Entry]:
        stream = _key(batch_id, "lines")
        return _entries(await consumer_group.read_new(self._redis, stream, GROUP, consumer, count))

    async def claim_stale(
        self, batch_id: str, consumer: str, idle_ms: int, count: int
    ) -> list[Entry]:
        claimed = await consumer_group.claim_stale(
            self._redis, _key(batch_id, "lines"), GROUP, consumer, idle_ms, count
        )
        return _entries(claimed.entries)

    async def ack(self, batch_id: str, ids: list[str]) -> None:
        await consumer_group.ack(self._redis, _key(batch_id, "lines"), GROUP, ids)

    async def begin(self, batch_id: str, line: int, consumer: str) -> str:
        keys = [_key(batch_id, "results"), _key(batch_id, "running"), _key(batch_id, "progress")]
        return _text(await self._run(BEGIN, keys, [line, consumer]))

    async def release(self, batch_id: str, line: int) -> None:
        await self._run(RELEASE, [_key(batch_id, "running"), _key(batch_id, "progress")], [line])

    async def requeue(self, batch_id: str, entry: Entry) -> None:
        await self._run(REQUEUE, [_key(batch_id, "lines")], [GROUP, entry.id, entry.line])

    async def finish(self, batch_id: str, line: int, result: bytes, ok: bool) -> bool:
        keys = [_key(batch_id, "results"), _key(batch_id, "progress")]
        outcome = "completed" if ok else "failed"
        return bool(await self._run(FINISH, keys, [line, result, outcome]))

    async def progress(self, batch_id: str) -> Progress:
        found = await self._redis.hgetall(_key(batch_id, "progress"))
        return progress_from({_text(k): _text(v) for k, v in (found or {}).items()})

    async def results(self, batch_id: str) -> dict[int, bytes]:
        found = await self._redis.hgetall(_key(batch_id, "results"))
        return {int(k): bytes(v) for k, v in (found or {}).items()}

    async def set_flags(self, batch_id: str, flags: dict[str, str]) -> None:
        await self._redis.hset(_key(batch_id, "progress"), mapping=flags)

    async def heartbeat(self, consumer: str, ttl_s: int) -> None:
        await self._redis.set(f"gw:batch-runner:{consumer}", b"1", ex=ttl_s)

    async def alive(self, consumer: str) -> bool:
        return bool(await self._redis.exists(f"gw:batch-runner:{consumer}"))

    async def forget(self, batch_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(_key(batch_id, "lines"), _key(batch_id, "running"))
            pipe.expire(_key(batch_id, "results"), FINISHED_TTL_S)
            pipe.expire(_key(batch_id, "progress"), FINISHED_TTL_S)
            await pipe.execute()

    async def add_stored_bytes(self, owner: str, delta: int) -> int:
        return int(await self._redis.incrby(f"gw:{{u:{owner}}}:file-bytes", delta))


def _entries(entries: Any) -> list[Entry]:
    found = []
    for entry_id, fields in entries or ():
        if fields:  # None: claimed but deleted
            line = fields.get(b"l", fields.get("l"))
            found.append(Entry(_text(entry_id), int(line)))
    return found


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
