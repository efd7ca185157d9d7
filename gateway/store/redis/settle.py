"""Ending reservations on Redis: settle batches applied once, and the sweep of expired leases.

The settle ends each lease, giving its grants back if it is still there, then adds the actual
usage. A batch carries an id and its script first sets a once-only mark, so a batch retried
after a lost reply is not applied twice; on a cluster each slot's part has its own mark, and
the sweeper updates the lease registry after each group.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from gateway.store import keys
from gateway.store.port import SettleBatch, SettleForm
from gateway.store.redis import scripts
from gateway.store.redis.connection import RedisConnection
from gateway.store.redis.reads import text

SWEEP_GROUPS, SWEEP_LEASES = 100, 500
FORGET_MAX = 1000  # settle marks deleted per call: bounds how long the script runs


class Settlements:
    """Settle batches and the lease sweep, one script per call (per slot on a cluster)."""

    def __init__(self, connection: RedisConnection, *, stream_maxlen: int) -> None:
        self._connection = connection
        self._maxlen = stream_maxlen
        # (when, mark) of batches whose reply arrived: deleted by a batch FORGET_AFTER_S later
        self._forget: deque[tuple[float, str]] = deque()

    async def settle(self, batches: Sequence[SettleBatch], batch_id: str = "") -> list[list[int]]:
        """``Store.settle``."""
        return await self._connection.guarded(lambda: self._apply(batches, batch_id))

    async def sweep(self) -> int:
        """``Store.sweep_leases``."""
        return await self._connection.guarded(self._sweep)

    async def _apply(self, batches: Sequence[SettleBatch], batch_id: str) -> list[list[int]]:
        if not self._connection.cluster:
            return await self._apply_standalone(batches, batch_id)
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
            *(self._connection.eval(call.keys, call.args, scripts.SETTLE) for call in calls),
            return_exceptions=True,
        )
        values: dict[tuple[str, str], int] = {}
        for call, reply in zip(calls, replies, strict=True):
            if isinstance(reply, BaseException):
                raise reply  # the groups that ran are marked: a retry skips them
            values.update(_values(call, reply))
        return _watched(batches, values)

    async def _apply_standalone(
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
            reply = await self._connection.eval(call.keys, call.args, scripts.SETTLE)
        except BaseException:
            self._forget.extendleft((now, name) for name in reversed(forget))
            raise
        if mark is not None and len(self._forget) < FORGET_MAX * 100:
            self._forget.append((now, mark))
        return _watched(batches, _values(call, reply))

    async def _sweep(self) -> int:
        connection = self._connection
        if not connection.cluster:
            args: scripts.Args = ["registry", SWEEP_GROUPS, SWEEP_LEASES]
            reply = await connection.eval([keys.LEASE_REGISTRY], args, scripts.SWEEP)
            return int(reply[0])
        due: Any = await connection.client.zrangebyscore(
            keys.LEASE_REGISTRY, "-inf", time.time(), start=0, num=SWEEP_GROUPS
        )
        ended = 0
        for raw in due:
            name = text(raw)
            args = ["group", 1, SWEEP_LEASES]
            reply = await connection.eval([name, keys.lease_data(name)], args, scripts.SWEEP)
            ended += int(reply[0])
            if int(reply[1]) < 0:
                # not atomic with the group: a lease written since is registered again by
                # its user's next reservation
                await connection.client.zrem(keys.LEASE_REGISTRY, name)
            else:
                await connection.client.zadd(keys.LEASE_REGISTRY, {name: int(reply[1])}, xx=True)
        return ended


def _values(call: scripts.SettleCall, reply: Any) -> dict[tuple[str, str], int]:
    """The watched values a settle call returned; none when the batch had already run."""
    values = list(reply)
    if not values or int(values[0]) == 0:
        return {}
    return dict(zip(call.watched, map(int, values[1:]), strict=True))


def _watched(batches: Sequence[SettleBatch], values: dict[tuple[str, str], int]) -> list[list[int]]:
    """Per batch, its watched totals in order; none unless every one of them was returned.
    Requests of one form with nothing spelled out watch the same fields: looked up once."""
    if not values:
        return [[] for _ in batches]
    found = []
    formed: dict[SettleForm, list[int]] = {}
    for batch in batches:
        form = batch.form
        if form is None or batch.written:
            found.append(_known(batch.watched(), values))
            continue
        totals = formed.get(form)
        if totals is None:
            totals = formed[form] = _known(form.watched, values)
        found.append(totals.copy())
    return found


def _known(watched: Sequence[tuple[str, str]], values: dict[tuple[str, str], int]) -> list[int]:
    try:
        return list(map(values.__getitem__, watched))
    except KeyError:
        return []
