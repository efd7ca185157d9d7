"""The Redis store: one Lua script per reservation, one pipeline per settle batch.

Works with a single Redis and with Redis Cluster. All of one user's keys share the hash tag
``{u:<user>}`` (and a tier's keys ``{t:<tier>}``), so on a cluster the reservation runs one
script per tag group, concurrently: the user group always, the tier group only when the tier
has a budget. If one group denies, the grants of the others are given back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisError

from gateway.metering.keys import USAGE_STREAM, hash_tag
from gateway.metering.pipelined import PipelinedConnection
from gateway.metering.store import Counter, Increment, SettleBatch, StoreError, Verdict

T = TypeVar("T")
SCRIPT = resources.files("gateway.metering").joinpath("reserve.lua").read_text()
SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()
SETTLE_SCRIPT = resources.files("gateway.metering").joinpath("settle.lua").read_text()
SETTLE_SHA = hashlib.sha1(SETTLE_SCRIPT.encode()).hexdigest()
FOREIGN_ERRORS = (RedisError, OSError, asyncio.TimeoutError)


class RedisStore:
    """``Store`` on redis-py asyncio (``Redis`` or ``RedisCluster``)."""

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        stream_maxlen: int,
        scripts: PipelinedConnection | None = None,
    ) -> None:
        """``scripts``, when given, runs the reserve and settle scripts (standalone Redis)."""
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._maxlen = stream_maxlen
        self._scripts = scripts

    async def reserve(self, counters: Sequence[Counter], override_key: str | None) -> Verdict:
        groups = self._groups(counters, override_key)
        if len(groups) == 1:
            return await _guard(lambda: self._run(counters, override_key))
        results = await asyncio.gather(
            *(self._run([counters[i] for i in idx], ovr) for idx, ovr in groups),
            return_exceptions=True,
        )
        return await self._merge(counters, groups, results)

    async def settle(self, batches: Sequence[SettleBatch]) -> list[list[int]]:
        return await _guard(lambda: self._settle(batches))

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, int]]:
        async def read() -> list[dict[str, int]]:
            async with self._client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                replies = await pipe.execute()
            return [{_text(k): int(v) for k, v in reply.items()} for reply in replies]

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

    async def records_page(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        async def page() -> list[tuple[str, bytes]]:
            top = f"({before}" if before else "+"
            entries: Any = await self._client.xrevrange(USAGE_STREAM, max=top, min="-", count=count)
            return [(_text(entry_id), bytes(fields[b"r"])) for entry_id, fields in entries or ()]

        return await _guard(page)

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
            by_tag.setdefault(hash_tag(counter.key), []).append(index)
        override_tag = hash_tag(override_key) if override_key else None
        return [(idx, override_key if tag == override_tag else None) for tag, idx in by_tag.items()]

    async def _run(self, counters: Sequence[Counter], override_key: str | None) -> Verdict:
        keys = list(dict.fromkeys(c.key for c in counters))
        position = {key: index + 1 for index, key in enumerate(keys)}
        ttl = {c.key: c.ttl_s for c in counters}
        spec = "\n".join(
            f"{position[c.key]}\t{c.field}\t{c.fixed}\t{c.flex}\t{c.limit}\t{c.limit_field}"
            f"\t{c.cap}\t{c.cap_field}"
            for c in counters
        )
        args = [len(keys), 1 if override_key else 0, ",".join(str(ttl[k]) for k in keys), spec]
        all_keys = [*keys, override_key] if override_key else keys
        reply = await self._eval(all_keys, args)
        return _verdict([int(v) for v in reply])

    async def _eval(
        self,
        keys: list[str],
        args: Sequence[str | int | bytes],
        script: str = SCRIPT,
        sha: str = SCRIPT_SHA,
    ) -> list[Any]:
        run = self._scripts.execute if self._scripts is not None else self._client.execute_command
        try:
            reply = await run("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            reply = await run("EVAL", script, len(keys), *keys, *args)
        return list(reply)

    async def _merge(
        self,
        counters: Sequence[Counter],
        groups: list[tuple[list[int], str | None]],
        results: Sequence[Verdict | BaseException],
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
        await self._give_back(counters, granted)
        if error is not None:
            raise _converted(error)
        return Verdict(tuple(used), tuple(limits), (0,) * size, denied)

    async def _give_back(self, counters: Sequence[Counter], granted: Sequence[int]) -> None:
        returns = tuple(
            Increment(c.key, c.field, -amount) for c, amount in zip(counters, granted, strict=True)
        )
        if any(inc.delta for inc in returns):
            await _guard(lambda: self._settle([SettleBatch(returns)]))

    async def _settle(self, batches: Sequence[SettleBatch]) -> list[list[int]]:
        if not self._cluster:
            keys, args, places = _settle_args(batches, self._maxlen)
            totals = await self._eval(keys, args, SETTLE_SCRIPT, SETTLE_SHA)
            return [[int(totals[i]) for i in batch] for batch in places]
        async with self._client.pipeline(transaction=False) as pipe:
            for batch in batches:
                _queue(pipe, batch, self._maxlen)
            replies = list(await pipe.execute())
        return _watched(batches, replies)


def _queue(pipe: Any, batch: SettleBatch, maxlen: int) -> None:
    ttl: dict[str, int] = {}
    for inc in batch.all_increments():
        if inc.delta or inc.watch:
            pipe.hincrby(inc.key, inc.field, inc.delta)
            if inc.ttl_s:
                ttl[inc.key] = inc.ttl_s
    for key, seconds in ttl.items():
        pipe.expire(key, seconds)
    if batch.record is not None:
        pipe.xadd(USAGE_STREAM, {"r": batch.record}, maxlen=maxlen, approximate=True)


def _settle_args(
    batches: Sequence[SettleBatch], maxlen: int
) -> tuple[list[str], list[str | int | bytes], list[list[int]]]:
    """KEYS and ARGV for settle.lua: the whole batch in one script call, increments to the
    same field summed first (requests of one user or model share most of them), and where
    each batch's watched values sit in the script's reply."""
    merged = _merged_increments(batches)
    index: dict[str, int] = {}
    watched: dict[tuple[str, str], int] = {}
    lines = []
    for (key, name), (delta, ttl, watch) in merged.items():
        if not (delta or watch):
            continue
        position = index.setdefault(key, len(index) + 1)
        lines.append(f"{position}\t{name}\t{delta}\t{ttl}\t{watch}")
        if watch:
            watched[key, name] = len(watched)
    records = [batch.record for batch in batches if batch.record]
    places = [
        [watched[inc.key, inc.field] for inc in batch.increments if inc.watch] for batch in batches
    ]
    return [*index, USAGE_STREAM], [maxlen, "\n".join(lines), *records], places


def _merged_increments(batches: Sequence[SettleBatch]) -> dict[tuple[str, str], list[int]]:
    """(key, field) → [summed delta, longest ttl, watched]; aggregates summed per key first."""
    merged: dict[tuple[str, str], list[int]] = {}
    for batch in batches:
        for inc in batch.increments:
            if inc.delta or inc.watch:
                slot = merged.get((inc.key, inc.field))
                if slot is None:
                    merged[inc.key, inc.field] = [inc.delta, inc.ttl_s, int(inc.watch)]
                else:
                    slot[0] += inc.delta
                    slot[1] = max(slot[1], inc.ttl_s)
                    slot[2] |= inc.watch
    sums: dict[tuple[str, tuple[str, ...]], tuple[list[int], int]] = {}
    for batch in batches:
        for aggregate in batch.aggregates:
            entry = sums.get((aggregate.key, aggregate.fields))
            if entry is None:
                sums[aggregate.key, aggregate.fields] = (list(aggregate.values), aggregate.ttl_s)
            else:
                total = entry[0]
                for i, value in enumerate(aggregate.values):
                    total[i] += value
    for (key, names), (totals, ttl) in sums.items():
        for name, value in zip(names, totals, strict=True):
            slot = merged.setdefault((key, name), [0, ttl, 0])
            slot[0] += value
            slot[1] = max(slot[1], ttl)
    return merged


def _watched(batches: Sequence[SettleBatch], replies: list[Any]) -> list[list[int]]:
    """Pick each batch's watched HINCRBY results out of the flat pipeline replies."""
    values: list[list[int]] = []
    position = 0
    for batch in batches:
        sent = [inc for inc in batch.all_increments() if inc.delta or inc.watch]
        expiring = {inc.key for inc in sent if inc.ttl_s}
        values.append([int(replies[position + i]) for i, inc in enumerate(sent) if inc.watch])
        position += len(sent) + len(expiring) + (batch.record is not None)
    return values


def _verdict(reply: list[int]) -> Verdict:
    triples = [reply[i : i + 3] for i in range(1, len(reply), 3)]
    used = tuple(t[0] for t in triples)
    limits = tuple(t[1] for t in triples)
    if reply[0]:
        return Verdict(used, limits, (0,) * len(triples), denied=reply[0] - 1)
    return Verdict(used, limits, tuple(t[2] for t in triples))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _converted(error: BaseException) -> BaseException:
    return (
        StoreError(f"{type(error).__name__}: {error}")
        if isinstance(error, FOREIGN_ERRORS)
        else error
    )


async def _guard(call: Callable[[], Awaitable[T]]) -> T:
    """Run one store operation, converting redis and socket errors into ``StoreError``."""
    try:
        return await call()
    except FOREIGN_ERRORS as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
