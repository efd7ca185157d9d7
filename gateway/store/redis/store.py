"""The Redis store: one Lua script per reservation, one per settle batch (per slot on a cluster).

Works with a single Redis and with Redis Cluster. All of one user's keys share the hash tag
``{u:<user>}`` (and a tier's keys ``{t:<tier>}``), so on a cluster the reservation runs one
script per tag group, concurrently: the user group always, the tier group only when the tier
has a budget. If one group denies, the grants of the others are given back at once.

Exactly once: a reservation records its grants under a lease (``keys.lease``) in the same
script (on a single Redis one lease in its first counter's group, whatever its counters'
tags); the settle ends the lease, giving the grants back if it is still there, then adds the
actual usage, so a reserve whose reply was lost is reconciled by its settle and one whose
worker died by the sweeper once the lease expired. A settle batch carries an id and its script
first sets a once-only mark, so a batch retried after a lost reply is not applied twice. On a
cluster each slot's part of a batch has its own mark; the lease registry there is written
beside the reservation (not atomically with it) and the sweeper updates it after each group.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from gateway.store import control, keys
from gateway.store.port import (
    AuditLog,
    ControlChange,
    Counter,
    CounterLayout,
    Decision,
    Lease,
    SettleBatch,
)
from gateway.store.redis import scripts
from gateway.store.redis.connection import RedisConnection
from gateway.store.redis.documents import read_many, write_many
from gateway.store.redis.errors import FOREIGN_ERRORS, converted, raise_if_cancelled
from gateway.store.redis.pipelined import ScriptRunner
from gateway.store.redis.reads import held_amounts, integers, stream_entries, text
from gateway.store.redis.reserve import Reservations
from gateway.store.redis.settle import Settlements


class RedisStore:
    """``Store`` on redis-py asyncio (``Redis`` or ``RedisCluster``): a connection, and the
    reservations and settlements parts over it; the reads and control writes are its own."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        stream_maxlen: int,
        scripts: ScriptRunner | None = None,
        rebuild: Callable[[], RedisCluster] | None = None,
    ) -> None:
        """``scripts``, when given, runs the reserve and settle scripts (and, on a cluster,
        the lease registry's writes): ``PipelinedConnection`` or ``ClusterPipelined``.
        ``rebuild`` makes a new cluster client, for when this one keeps failing."""
        self._connection = RedisConnection(client, scripts=scripts, rebuild=rebuild)
        self._settlements = Settlements(self._connection, stream_maxlen=stream_maxlen)
        self._reservations = Reservations(self._connection, self._settlements)

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client, for the ledger's stream consumer (``gateway/ledger/``)."""
        return self._connection.client

    async def reserve(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        lease: Lease | None = None,
        layout: CounterLayout | None = None,
    ) -> Decision:
        return await self._reservations.reserve(counters, override_key, lease, layout)

    async def settle(self, batches: Sequence[SettleBatch], batch_id: str = "") -> list[list[int]]:
        return await self._settlements.settle(batches, batch_id)

    async def sweep_leases(self) -> int:
        return await self._settlements.sweep()

    async def user_records(self, user: str, days: Sequence[str]) -> list[bytes]:
        async def read() -> list[bytes]:
            async with self.client.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.lrange(keys.user_records(user, day), 0, -1)
                lists = await pipe.execute()
            entries = [bytes(entry) for found in lists for entry in found]
            ids = [entry.decode() for entry in entries if not entry.startswith(b"{")]
            by_id = await stream_entries(self.client, ids)
            return [
                by_id.get(entry.decode(), b"") if entry[:1] != b"{" else entry for entry in entries
            ]

        return [record for record in await self._connection.guarded(read) if record]

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, int]]:
        async def read() -> list[dict[str, int]]:
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            return [integers(key, reply) for key, reply in zip(keys, replies, strict=True)]

        return await self._connection.guarded(read)

    async def read_reservations(self, lease_key: str) -> dict[str, int]:
        async def read() -> dict[str, int]:
            payloads = await self.client.hvals(keys.lease_data(lease_key))
            return held_amounts(text(payload) for payload in payloads)

        return await self._connection.guarded(read)

    async def read_view(
        self, names: Sequence[str], lease_key: str
    ) -> tuple[list[dict[str, int]], dict[str, int]]:
        slot = keys.slot_tag(lease_key)
        together = [name for name in names if keys.slot_tag(name) == slot]
        apart = [name for name in names if keys.slot_tag(name) != slot]

        async def read() -> tuple[list[dict[str, int]], dict[str, int]]:
            reply = await self._connection.eval(
                [*together, keys.lease_data(lease_key)], [], scripts.VIEW
            )
            *flat, payloads = reply
            found = {
                name: integers(name, dict(zip(fields[::2], fields[1::2], strict=True)))
                for name, fields in zip(together, flat, strict=True)
            }
            found.update(zip(apart, await self.read_hashes(apart) if apart else [], strict=True))
            return [found[name] for name in names], held_amounts(text(p) for p in payloads)

        return await self._connection.guarded(read)

    async def write_hash(self, key: str, values: Mapping[str, int], delete: Sequence[str]) -> None:
        async def write() -> None:
            async with self.client.pipeline(transaction=not self._connection.cluster) as pipe:
                if delete:
                    pipe.hdel(key, *delete)
                if values:
                    pipe.hset(key, mapping=cast(Any, dict(values)))
                await pipe.execute()

        await self._connection.guarded(write)

    async def set_once(self, key: str, ttl_s: int) -> bool:
        return bool(
            await self._connection.guarded(lambda: self.client.set(key, b"1", nx=True, ex=ttl_s))
        )

    async def put_document(self, key: str, field: str, value: bytes, ttl_s: int) -> None:
        async def write() -> None:
            async with self.client.pipeline(transaction=not self._connection.cluster) as pipe:
                pipe.hset(key, field, value)
                pipe.expire(key, ttl_s)
                await pipe.execute()

        await self._connection.guarded(write)

    async def get_document(self, key: str, field: str) -> bytes | None:
        found: Any = await self._connection.guarded(lambda: self.client.hget(key, field))
        return bytes(found) if found is not None else None

    async def get_documents(self, keys: Sequence[str], field: str) -> list[bytes | None]:
        if not keys:
            return []
        return await self._connection.guarded(lambda: read_many(self._connection, keys, field))

    async def put_documents(self, field: str, documents: Sequence[tuple[str, bytes, int]]) -> None:
        if documents:
            await self._connection.guarded(lambda: write_many(self._connection, field, documents))

    async def documents(self, key: str) -> list[bytes]:
        found: Any = await self._connection.guarded(lambda: self.client.hvals(key))
        return [bytes(value) for value in found or ()]

    async def records_page(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        async def page() -> list[tuple[str, bytes]]:
            top = f"({before}" if before else "+"
            entries: Any = await self.client.xrevrange(
                keys.USAGE_STREAM, max=top, min="-", count=count
            )
            return [(text(entry_id), bytes(fields[b"r"])) for entry_id, fields in entries or ()]

        return await self._connection.guarded(page)

    async def records_after(
        self, after: str | None, through: str, count: int
    ) -> tuple[list[bytes], str]:
        async def page() -> tuple[list[bytes], str]:
            first = f"({after}" if after else "-"
            entries: Any = await self.client.xrange(
                keys.USAGE_STREAM, min=first, max=through, count=count
            )
            if not entries:
                return [], ""
            return [fields.get(b"r", b"") for _, fields in entries], text(entries[-1][0])

        return await self._connection.guarded(page)

    async def control_load(self) -> tuple[int, dict[str, dict[str, bytes]]]:
        return await self._connection.guarded(lambda: control.load(self.client))

    async def control_version(self) -> int:
        return await self._connection.guarded(lambda: control.version(self.client))

    async def control_read(self, kind: str, id: str) -> bytes | None:
        return await self._connection.guarded(lambda: control.read(self.client, kind, id))

    async def control_write(
        self,
        kind: str,
        id: str,
        value: bytes | None,
        audit: bytes,
        audit_maxlen: int,
        log: AuditLog = "operator",
    ) -> int:
        return await self._connection.guarded(
            lambda: control.write(
                self.client,
                kind,
                id,
                value,
                audit,
                audit_maxlen,
                publish=not self._connection.cluster,
                log=log,
            )
        )

    async def control_note(
        self, audit: bytes, audit_maxlen: int, log: AuditLog = "operator"
    ) -> None:
        await self._connection.guarded(lambda: control.note(self.client, audit, audit_maxlen, log))

    async def control_audit(
        self, before: str | None, count: int, log: AuditLog = "operator"
    ) -> list[tuple[str, bytes]]:
        return await self._connection.guarded(
            lambda: control.audit_page(self.client, before, count, log)
        )

    def control_changes(self) -> AsyncIterator[ControlChange] | None:
        client = self.client
        if isinstance(client, RedisCluster):  # no asyncio pub/sub: the poll does it
            return None
        return self._changes(client)

    async def _changes(self, client: Redis) -> AsyncIterator[ControlChange]:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(control.CHANNEL)
            async for message in pubsub.listen():
                raise_if_cancelled()  # redis-py may have swallowed it
                if message.get("type") == "message":
                    yield control.parse_change(message["data"])
        except FOREIGN_ERRORS as exc:
            raise converted(exc) from exc
        finally:
            with contextlib.suppress(*FOREIGN_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]

    async def ping(self) -> None:
        await self._connection.guarded(lambda: self.client.ping())

    async def aclose(self) -> None:
        with contextlib.suppress(*FOREIGN_ERRORS):
            await self._connection.aclose()
