"""Reserving on Redis: one script per hash-tag group, concurrently, merged into one decision.

On a single Redis there is one group: one script on the pipelined connection, the request's
hot path. On a cluster the user's keys (``{u:<user>}``) and the tier's (``{t:<tier>}``) are
separate groups, and the lease registry is written beside them; if one group denies or fails,
the grants of the others are given back at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from operator import add, itemgetter
from typing import Any, cast

from redis.exceptions import NoScriptError

from gateway.store import keys
from gateway.store.port import (
    Counter,
    CounterLayout,
    Decision,
    Lease,
    LeaseEnd,
    SettleBatch,
    StoreError,
)
from gateway.store.redis import reserve_layout, reserve_template, scripts
from gateway.store.redis.connection import RedisConnection
from gateway.store.redis.errors import converted, raise_if_cancelled
from gateway.store.redis.pipelined import GroupFailed, PipelinedConnection, pack
from gateway.store.redis.reserve_template import ReserveCall
from gateway.store.redis.settle import Settlements

Groups = list[tuple[list[int], str | None]]  # counter indexes per hash tag, and its override


class _ReserveGroup:
    """The reservations queued in one turn of the event loop, in one reserve.lua call."""

    def command(self, members: list[ReserveCall]) -> bytes:
        if len(members) == 1:
            return members[0].packed_alone()
        packed = reserve_template.packed_group(members)
        if packed is not None:
            return packed
        names, args = reserve_layout.grouped_reserve_args([call.in_group() for call in members])
        return pack(scripts.RESERVE.by_sha(names, args))

    def replies(self, reply: Any, count: int) -> list[Any]:
        return [reply] if count == 1 else split_replies(reply, count)


_GROUP = _ReserveGroup()


class Reservations:
    """``Store.reserve`` on Redis: the script per group, the merge, the give-back."""

    def __init__(self, connection: RedisConnection, settlements: Settlements) -> None:
        self._connection = connection
        self._settlements = settlements  # ends the lease of a reservation a group refused
        runner = connection.scripts
        self._pipelined = runner if isinstance(runner, PipelinedConnection) else None

    async def reserve(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        lease: Lease | None = None,
        layout: CounterLayout | None = None,
    ) -> Decision:
        """``Store.reserve``. On a single Redis the script is sent from here, errors converted
        here too (no ``guard`` frame): the reservation is on every request's path. The
        reservations of one turn share one call (``_ReserveGroup``); when such a call fails
        with an error reply it wrote nothing, and each is sent again alone for its own answer."""
        if self._connection.cluster:
            return await self._spread(counters, override_key, lease)
        call = reserve_template.reserve_call(counters, override_key, lease, layout, registry=True)
        execute = self._connection.execute
        try:
            try:
                if self._pipelined is not None:
                    reply = await self._pipelined.execute_grouped(_GROUP, call)
                else:
                    reply = await execute(*scripts.RESERVE.by_sha(*call.alone()))
            except GroupFailed:
                reply = await self._connection.eval(*call.alone(), scripts.RESERVE)
            except NoScriptError:
                reply = await execute(*scripts.RESERVE.by_text(*call.alone()))
        except StoreError:
            raise
        except Exception as exc:
            failure = converted(exc)
            if failure is exc:
                raise
            raise failure from exc
        if self._pipelined is None:  # only redis-py swallows a cancellation (the check: a getpid)
            raise_if_cancelled()
        return _decision(reply, counters)

    async def _spread(
        self, counters: Sequence[Counter], override_key: str | None, lease: Lease | None
    ) -> Decision:
        """On a cluster: one script per hash-tag group and the lease registry, concurrently."""
        groups = self._groups(counters, override_key)
        registry = [self._register(counters, lease)] if lease else []
        if len(groups) == 1 and not registry:
            return await self._connection.guarded(lambda: self._run(counters, override_key, lease))
        runs = (self._run([counters[i] for i in idx], ovr, lease) for idx, ovr in groups)
        results = await asyncio.gather(*runs, *registry, return_exceptions=True)
        decisions = cast(list[Decision | BaseException], results[: len(groups)])
        return await self._merge(counters, groups, decisions, lease)

    @staticmethod
    def _groups(counters: Sequence[Counter], override_key: str | None) -> Groups:
        by_tag: dict[str | None, list[int]] = {}
        for index, counter in enumerate(counters):
            by_tag.setdefault(keys.hash_tag(counter.key), []).append(index)
        override_tag = keys.hash_tag(override_key) if override_key else None
        return [(idx, override_key if tag == override_tag else None) for tag, idx in by_tag.items()]

    async def _run(
        self, counters: Sequence[Counter], override_key: str | None, lease: Lease | None
    ) -> Decision:
        names, args = scripts.reserve_args(counters, override_key, lease, registry=False)
        return _decision(await self._connection.eval(names, args, scripts.RESERVE), counters)

    async def _register(self, counters: Sequence[Counter], lease: Lease) -> None:
        """The registry entries of the lease groups (another slot)."""
        due = int(time.time()) + lease.ttl_s
        groups = dict.fromkeys(keys.lease(c.key) for c in counters)
        if self._connection.scripts is not None:
            members = [part for name in groups for part in (due, name)]
            await self._connection.scripts.execute("ZADD", keys.LEASE_REGISTRY, "LT", *members)
            return
        await self._connection.client.zadd(keys.LEASE_REGISTRY, dict.fromkeys(groups, due), lt=True)

    async def _merge(
        self,
        counters: Sequence[Counter],
        groups: Groups,
        results: Sequence[Decision | BaseException],
        lease: Lease | None,
    ) -> Decision:
        """Combine per-group decisions; give back the grants when any group failed or denied."""
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
            return Decision(tuple(used), tuple(limits), tuple(granted))
        if lease is not None:  # the groups that granted recorded it: end it there
            ended = dict.fromkeys(keys.lease(c.key) for c in counters)
            leases = tuple(LeaseEnd(name, lease.id) for name in ended)
            await self._settlements.settle([SettleBatch((), leases=leases)])
        if error is not None:
            raise converted(error)
        return Decision(tuple(used), tuple(limits), (0,) * size, denied)


def split_replies(flat: Sequence[Any], count: int) -> list[Sequence[Any]]:
    """reserve.lua's reply to ``count`` reservations in one call (one array: per reservation its
    number of values, then its reply), one reply each."""
    replies = []
    at = 0
    for _ in range(count):
        end = at + 1 + flat[at]
        replies.append(flat[at + 1 : end])
        at = end
    return replies


def _decision(reply: Any, counters: Sequence[Counter]) -> Decision:
    """The reserve script's reply for ``counters``: the refused index + 1 (0: none), each
    counter's used value, then (its number, effective limit, grant) for each counter whose
    limit is not the one sent or whose grant is not its ``fixed + flex``."""
    values: Sequence[int] = reply  # the script's numbers: integer replies, ints already
    size = len(counters)
    used = tuple(values[1 : size + 1])
    if len(values) == size + 1 and not values[0]:  # the usual answer: no exception
        granted = tuple(map(add, map(_FIXED, counters), map(_FLEX, counters)))
        return Decision(used, tuple(map(_LIMIT, counters)), granted)
    limits = list(map(_LIMIT, counters))
    grants = list(map(add, map(_FIXED, counters), map(_FLEX, counters)))
    for at in range(size + 1, len(values), 3):
        number = values[at] - 1
        limits[number] = values[at + 1]
        grants[number] = values[at + 2]
    if values[0]:
        return Decision(used, tuple(limits), (0,) * size, denied=values[0] - 1)
    return Decision(used, tuple(limits), tuple(grants))


_FIXED, _LIMIT, _FLEX = itemgetter(2), itemgetter(3), itemgetter(5)  # a ``Counter``'s, in C
