"""The Redis store: one Lua script per reservation, one per settle batch (per slot on a cluster).

Works with a single Redis and with Redis Cluster. All of one user's keys share the hash tag
``{u:<user>}`` (and a tier's keys ``{t:<tier>}``), so on a cluster the reservation runs one
script per tag group, concurrently: the user group always, the tier group only when the tier
has a budget. If one group denies, the grants of the others are given back at once.

Exactly once: a reservation records its grants under a lease (``keys.lease``) in the same
script; the settle ends the lease, giving the grants back if it is still there, then adds the
actual usage, so a reserve whose reply was lost is reconciled by its settle and one whose
worker died by the sweeper once the lease expired. A settle batch carries an id and its script
first sets a once-only mark, so a batch retried after a lost reply is not applied twice. On a
cluster each slot's part of a batch has its own mark; the lease registry there is written
beside the reservation (not atomically with it) and the sweeper updates it after each group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from gateway.metering import control_store, keys, scripts
from gateway.metering.pipelined import ScriptRunner
from gateway.metering.redis_errors import FOREIGN_ERRORS
from gateway.metering.redis_errors import converted as _converted
from gateway.metering.redis_errors import guard as _guard
from gateway.metering.scripts import Script
from gateway.metering.store import (
    MAX_STORED,
    Counter,
    Lease,
    LeaseEnd,
    SettleBatch,
    Verdict,
)

SWEEP_GROUPS, SWEEP_LEASES = 100, 500
FORGET_MAX = 1000  # settle marks deleted per call: bounds how long the script runs
logger = logging.getLogger("gateway.metering")


class RedisStore:
    """``Store`` on redis-py asyncio (``Redis`` or ``RedisCluster``)."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        stream_maxlen: int,
        scripts: ScriptRunner | None = None,
    ) -> None:
        """``scripts``, when given, runs the reserve and settle scripts (and, on a cluster,
        the lease registry's writes): ``PipelinedConnection`` or ``ClusterPipelined``."""
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._maxlen = stream_maxlen
        self._scripts = scripts
        # (when, mark) of batches whose reply arrived: deleted by a batch FORGET_AFTER_S later
        self._forget: deque[tuple[float, str]] = deque()

    @property
    def client(self) -> Redis | RedisCluster:
        """The redis-py client, for the ledger's stream consumer (``gateway/ledger/``)."""
        return self._client

    async def reserve(
        self, counters: Sequence[Counter], override_key: str | None, lease: Lease | None = None
    ) -> Verdict:
        groups = self._groups(counters, override_key)
        registry = [self._register(counters, lease)] if self._cluster and lease else []
        if len(groups) == 1 and not registry:
            return await _guard(lambda: self._run(counters, override_key, lease))
        runs = (self._run([counters[i] for i in idx], ovr, lease) for idx, ovr in groups)
        results = await asyncio.gather(*runs, *registry, return_exceptions=True)
        verdicts = cast(list[Verdict | BaseException], results[: len(groups)])
        return await self._merge(counters, groups, verdicts, lease)

    async def settle(self, batches: Sequence[SettleBatch], batch_id: str = "") -> list[list[int]]:
        return await _guard(lambda: self._settle(batches, batch_id))

    async def sweep_leases(self) -> int:
        return await _guard(self._sweep)

    async def user_records(self, user: str, days: Sequence[str]) -> list[bytes]:
        async def read() -> list[bytes]:
            async with self._client.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.lrange(keys.user_records(user, day), 0, -1)
                lists = await pipe.execute()
            entries = [bytes(entry) for found in lists for entry in found]
            ids = [entry.decode() for entry in entries if not entry.startswith(b"{")]
            by_id = await self._entries(ids)
            return [
                by_id.get(entry.decode(), b"") if entry[:1] != b"{" else entry for entry in entries
            ]

        return [record for record in await _guard(read) if record]

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, int]]:
        async def read() -> list[dict[str, int]]:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            return [_integers(key, reply) for key, reply in zip(keys, replies, strict=True)]

        return await _guard(read)

    async def read_reservations(self, lease_key: str) -> dict[str, int]:
        async def read() -> dict[str, int]:
            payloads = await self._client.hvals(keys.lease_data(lease_key))
            return held_amounts(_text(payload) for payload in payloads)

        return await _guard(read)

    async def write_hash(self, key: str, values: Mapping[str, int], delete: Sequence[str]) -> None:
        async def write() -> None:
            async with self._client.pipeline(transaction=not self._cluster) as pipe:
                if delete:
                    pipe.hdel(key, *delete)
                if values:
                    pipe.hset(key, mapping=cast(Any, dict(values)))
                await pipe.execute()

        await _guard(write)

    async def set_once(self, key: str, ttl_s: int) -> bool:
        return bool(await _guard(lambda: self._client.set(key, b"1", nx=True, ex=ttl_s)))

    async def put_document(self, key: str, field: str, value: bytes, ttl_s: int) -> None:
        async def write() -> None:
            async with self._client.pipeline(transaction=not self._cluster) as pipe:
                pipe.hset(key, field, value)
                pipe.expire(key, ttl_s)
                await pipe.execute()

        await _guard(write)

    async def get_document(self, key: str, field: str) -> bytes | None:
        found: Any = await _guard(lambda: self._client.hget(key, field))
        return bytes(found) if found is not None else None

    async def documents(self, key: str) -> list[bytes]:
        found: Any = await _guard(lambda: self._client.hvals(key))
        return [bytes(value) for value in found or ()]

    async def records_page(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        async def page() -> list[tuple[str, bytes]]:
            top = f"({before}" if before else "+"
            entries: Any = await self._client.xrevrange(
                keys.USAGE_STREAM, max=top, min="-", count=count
            )
            return [(_text(entry_id), bytes(fields[b"r"])) for entry_id, fields in entries or ()]

        return await _guard(page)

    async def control_load(self) -> tuple[int, dict[str, dict[str, bytes]]]:
        return await _guard(lambda: control_store.load(self._client))

    async def control_version(self) -> int:
        return await _guard(lambda: control_store.version(self._client))

    async def control_write(
        self, kind: str, id: str, value: bytes | None, audit: bytes, audit_maxlen: int
    ) -> int:
        return await _guard(
            lambda: control_store.write(
                self._client, kind, id, value, audit, audit_maxlen, publish=not self._cluster
            )
        )

    async def control_note(self, audit: bytes, audit_maxlen: int) -> None:
        await _guard(lambda: control_store.note(self._client, audit, audit_maxlen))

    async def control_audit(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        return await _guard(lambda: control_store.audit_page(self._client, before, count))

    def control_changes(self) -> AsyncIterator[int] | None:
        if isinstance(self._client, RedisCluster):  # no asyncio pub/sub: the poll does it
            return None
        return self._changes(self._client)

    async def _changes(self, client: Redis) -> AsyncIterator[int]:
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(control_store.CHANNEL)
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    yield int(message["data"])
        except FOREIGN_ERRORS as exc:
            raise _converted(exc) from exc
        finally:
            with contextlib.suppress(*FOREIGN_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def ping(self) -> None:
        await _guard(lambda: self._client.ping())

    async def aclose(self) -> None:
        with contextlib.suppress(*FOREIGN_ERRORS):
            if self._scripts is not None:
                await self._scripts.aclose()
            await self._client.aclose()

    # -- internals -------------------------------------------------------------------------

    def _groups(
        self, counters: Sequence[Counter], override_key: str | None
    ) -> list[tuple[list[int], str | None]]:
        """Counter indexes per hash tag (one group unless on a cluster)."""
        if not self._cluster:
            return [(list(range(len(counters))), override_key)]
        by_tag: dict[str | None, list[int]] = {}
        for index, counter in enumerate(counters):
            by_tag.setdefault(keys.hash_tag(counter.key), []).append(index)
        override_tag = keys.hash_tag(override_key) if override_key else None
        return [(idx, override_key if tag == override_tag else None) for tag, idx in by_tag.items()]

    async def _run(
        self, counters: Sequence[Counter], override_key: str | None, lease: Lease | None
    ) -> Verdict:
        all_keys, args = scripts.reserve_args(
            counters, override_key, lease, registry=not self._cluster
        )
        reply = await self._eval(all_keys, args, scripts.RESERVE)
        return _verdict([int(v) for v in reply])

    async def _register(self, counters: Sequence[Counter], lease: Lease) -> None:
        """On a cluster: the registry entries of the lease groups (another slot)."""
        due = int(time.time()) + lease.ttl_s
        groups = dict.fromkeys(keys.lease(c.key) for c in counters)
        if self._scripts is not None:
            members = [part for name in groups for part in (due, name)]
            await self._scripts.execute("ZADD", keys.LEASE_REGISTRY, "LT", *members)
            return
        await self._client.zadd(keys.LEASE_REGISTRY, dict.fromkeys(groups, due), lt=True)

    async def _eval(
        self, keys: list[str], args: Sequence[str | int | bytes], script: Script
    ) -> Any:
        run = self._scripts.execute if self._scripts is not None else self._client.execute_command
        try:
            reply = await run("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            reply = await run("EVAL", script.text, len(keys), *keys, *args)
        return reply

    async def _merge(
        self,
        counters: Sequence[Counter],
        groups: list[tuple[list[int], str | None]],
        results: Sequence[Verdict | BaseException],
        lease: Lease | None,
    ) -> Verdict:
        """Combine per-group verdicts; give back the grants when any group failed or denied."""
        size = len(counters)
        used, limits, granted = [0] * size, [-1] * size, [0] * size
        denied: int | None = None
        error: BaseException | None = None
        for (indexes, _), result in zip(groups, results, strict=True):
            if isinstance(result, BaseException):
                error = result
                continue
            for position, index in enumerate(indexes):
                used[index], limits[index] = result.used[position], result.limits[position]
                granted[index] = result.granted[position]
            if result.denied is not None:
                first = indexes[result.denied]
                denied = first if denied is None else min(denied, first)
        if error is None and denied is None:
            return Verdict(tuple(used), tuple(limits), tuple(granted))
        if lease is not None:  # the groups that granted recorded it: end it there
            ended = dict.fromkeys(keys.lease(c.key) for c in counters)
            leases = tuple(LeaseEnd(name, lease.id) for name in ended)
            await _guard(lambda: self._settle([SettleBatch((), leases=leases)], ""))
        if error is not None:
            raise _converted(error)
        return Verdict(tuple(used), tuple(limits), (0,) * size, denied)

    async def _settle(self, batches: Sequence[SettleBatch], batch_id: str) -> list[list[int]]:
        if not self._cluster:
            return await self._settle_standalone(batches, batch_id)
        calls = []
        for tag in scripts.slot_tags(batches):
            mark = keys.settled_mark(tag, batch_id) if batch_id else None
            stream = tag == keys.slot_tag(keys.USAGE_STREAM)
            call = scripts.settle_call(
                batches,
                self._maxlen,
                mark=mark,
                stream=stream,
                by_id=False,
                tag=tag,
                mark_ttl_s=scripts.CLUSTER_SETTLED_MARK_S,
            )
            if call is not None:
                calls.append(call)
        replies = await asyncio.gather(
            *(self._eval(call.keys, call.args, scripts.SETTLE) for call in calls),
            return_exceptions=True,
        )
        values: dict[tuple[str, str], int] = {}
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply  # the groups that ran are marked: a retry skips them
            values.update(_values(call, reply))
        return _watched(batches, values)

    async def _settle_standalone(
        self, batches: Sequence[SettleBatch], batch_id: str
    ) -> list[list[int]]:
        mark = keys.settled_mark("settle", batch_id) if batch_id else None
        now = time.monotonic()
        forget = []
        while self._forget and self._forget[0][0] < now - scripts.FORGET_AFTER_S:
            forget.append(self._forget.popleft()[1])
            if len(forget) >= FORGET_MAX:
                break
        call = scripts.settle_call(
            batches, self._maxlen, mark=mark, stream=True, by_id=True, forget=forget
        )
        if call is None:
            return [[] for _ in batches]
        try:
            reply = await self._eval(call.keys, call.args, scripts.SETTLE)
        except BaseException:
            self._forget.extendleft((now, name) for name in reversed(forget))
            raise
        if mark is not None and len(self._forget) < FORGET_MAX * 100:
            self._forget.append((now, mark))
        return _watched(batches, _values(call, reply))

    async def _sweep(self) -> int:
        if not self._cluster:
            args: list[str | int | bytes] = ["registry", SWEEP_GROUPS, SWEEP_LEASES]
            reply = await self._eval([keys.LEASE_REGISTRY], args, scripts.SWEEP)
            return int(reply[0])
        due: Any = await self._client.zrangebyscore(
            keys.LEASE_REGISTRY, "-inf", time.time(), start=0, num=SWEEP_GROUPS
        )
        ended = 0
        for raw in due:
            name = _text(raw)
            args = ["group", 1, SWEEP_LEASES]
            reply = await self._eval([name, keys.lease_data(name)], args, scripts.SWEEP)
            ended += int(reply[0])
            if int(reply[1]) < 0:
                # not atomic with the group: a lease written since is registered again by
                # its user's next reservation
                await self._client.zrem(keys.LEASE_REGISTRY, name)
            else:
                await self._client.zadd(keys.LEASE_REGISTRY, {name: int(reply[1])}, xx=True)
        return ended

    async def _entries(self, ids: Sequence[str]) -> dict[str, bytes]:
        """Stream entries by id (those trimmed from the stream are missing)."""
        found: dict[str, bytes] = {}
        for start in range(0, len(ids), 1000):
            async with self._client.pipeline(transaction=False) as pipe:
                for entry_id in ids[start : start + 1000]:
                    pipe.xrange(keys.USAGE_STREAM, min=entry_id, max=entry_id, count=1)
                replies = await pipe.execute()
            for reply in replies:
                for entry_id, fields in reply or ():
                    found[_text(entry_id)] = bytes(fields[b"r"])
        return found


def _values(call: scripts.SettleCall, reply: Any) -> dict[tuple[str, str], int]:
    """The watched values a settle call returned; none when the batch had already run."""
    values = list(reply)
    if not values or int(values[0]) == 0:
        return {}
    return dict(zip(call.watched, (int(v) for v in values[1:]), strict=True))


def _watched(batches: Sequence[SettleBatch], values: dict[tuple[str, str], int]) -> list[list[int]]:
    return [
        [values[inc.key, inc.field] for inc in batch.increments if inc.watch]
        if all((inc.key, inc.field) in values for inc in batch.increments if inc.watch)
        else []
        for batch in batches
    ]


def _verdict(reply: list[int]) -> Verdict:
    triples = [reply[i : i + 3] for i in range(1, len(reply), 3)]
    used = tuple(t[0] for t in triples)
    limits = tuple(t[1] for t in triples)
    if reply[0]:
        return Verdict(used, limits, (0,) * len(triples), denied=reply[0] - 1)
    return Verdict(used, limits, tuple(t[2] for t in triples))


def held_amounts(payloads: Iterable[str]) -> dict[str, int]:
    """Sum the ``key\tfield\tamount`` lines of lease payloads per ``key\tfield``."""
    held: dict[str, int] = {}
    for payload in payloads:
        for line in payload.splitlines():
            key, _, rest = line.partition("\t")
            field, _, amount = rest.partition("\t")
            if amount.lstrip("-").isdigit():
                name = f"{key}\t{field}"
                held[name] = held.get(name, 0) + int(amount)
    return held


def _integers(key: str, stored: Mapping[Any, Any]) -> dict[str, int]:
    """A hash's integer fields; a field holding anything else is left out (and logged)."""
    values: dict[str, int] = {}
    for name, raw in stored.items():
        try:
            value = int(raw)
        except ValueError:
            value = MAX_STORED + 1
        if abs(value) <= MAX_STORED:
            values[_text(name)] = value
        else:
            logger.warning("metering: ignoring %s %s: not an integer in range", key, _text(name))
    return values


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
