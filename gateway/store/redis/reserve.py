"""Reserving on Redis: one script per hash-tag group, concurrently, merged into one verdict.

On a single Redis there is one group. On a cluster the user's keys (``{u:<user>}``) and the
tier's (``{t:<tier>}``) are separate groups, and the lease registry is written beside them;
if one group denies or fails, the grants of the others are given back at once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gateway.store import keys
from gateway.store.port import Counter, Lease, LeaseEnd, SettleBatch, Verdict
from gateway.store.redis import scripts
from gateway.store.redis.errors import converted as _converted
from gateway.store.redis.settle import RedisSettle


class RedisReserve(RedisSettle):
    """The reservation's parts: grouping by hash tag, the script per group, the merge."""

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
        return _verdict(list(map(int, reply)))

    async def _register(self, counters: Sequence[Counter], lease: Lease) -> None:
        """On a cluster: the registry entries of the lease groups (another slot)."""
        due = int(time.time()) + lease.ttl_s
        groups = dict.fromkeys(keys.lease(c.key) for c in counters)
        if self._scripts is not None:
            members = [part for name in groups for part in (due, name)]
            await self._scripts.execute("ZADD", keys.LEASE_REGISTRY, "LT", *members)
            return
        await self._client.zadd(keys.LEASE_REGISTRY, dict.fromkeys(groups, due), lt=True)

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
            await self._guarded(lambda: self._settle([SettleBatch((), leases=leases)], ""))
        if error is not None:
            raise _converted(error)
        return Verdict(tuple(used), tuple(limits), (0,) * size, denied)


def _verdict(reply: list[int]) -> Verdict:
    """The reserve script's reply: the refused index + 1 (0: none), then used, limit, granted."""
    used = tuple(reply[1::3])
    limits = tuple(reply[2::3])
    if reply[0]:
        return Verdict(used, limits, (0,) * len(used), denied=reply[0] - 1)
    return Verdict(used, limits, tuple(reply[3::3]))
