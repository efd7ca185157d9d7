"""Level allowances: an organization's or team's window counters reserved ahead, per process.

A busy level's requests need not each check its twelve window counters in Redis: a process
reserves a chunk of them ahead (an *allowance*: the same amount of requests, tokens and
micro-USD in each of the level's windows, granted atomically against every window's counter
and recorded in a lease like any reservation), and admits locally while the chunk covers a
request's estimate. The user's and key's counters and the level's in-flight count
(``max_parallel``, one counter per level) are still reserved per request in Redis.

- **Exact, one-sided.** A process admits against its allowance only what fits in it, and the
  allowance fitted under every window's limit when granted, so no level limit is exceeded by
  admissions (as before, a request using more than its estimate may pass it by the excess).
- **Usage.** A request served from an allowance adds its actual usage to the level's
  counters at settle, as ``Aggregate`` values, which the store sums per flush: one write per
  (hash, field) per settle batch, not per request. Its estimate leaves the allowance at
  admission and what it did not use comes back to it locally.
- **What a reader sees.** A level's counter reads its actual usage plus every open
  allowance's unused part: toward refusing, never toward allowing.
- **End.** An allowance ends when a request does not fit in it, when any of its windows rolls
  (another minute, hour, local day or month: another counter key), after ``MAX_AGE_S`` (well
  within the lease's time to live), after ``IDLE_S`` without a request, when the level's
  limits change and at shutdown. Its unused part (the chunk less the estimates of its requests
  still in flight, which settle against the counters directly) goes back in the next settle
  batch, with the end of its lease. A process that dies holds its allowance until the lease
  sweeper gives the chunk back; the usage it had settled is already in the counters.
- **Size and the bound.** An allowance is granted only to a level that is busy in this process
  (``HOT`` exact reservations within ``HOT_S`` seconds) and has room: a grant is, per measure,
  the smaller of ``CHUNK`` requests' worth and 1/``SHARE`` of the least headroom of the level's
  windows, and none is granted under ``SMALLEST`` requests' worth (so none while less than
  ``SHARE`` x ``SMALLEST`` = 64 requests' worth is left: the level is then reserved per
  request, exactly as without allowances). When what is left falls below half the last grant,
  another is asked for in the background (its own lease) and added: a steady stream is served
  from the allowance throughout. A request is refused only by the store, so its 429 names the
  level and the window as before; it may be refused while other processes hold allowances: a
  level may stop short of its limit by at most the unused part of the others' open
  allowances, each under one and a half grants, and given back within ``IDLE_S`` of its last
  request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from gateway.metering.types import Amounts, Check
from gateway.store import keys
from gateway.store.port import (
    Aggregate,
    Counter,
    Decision,
    Increment,
    Lease,
    LeaseEnd,
    SettleBatch,
    Store,
    StoreError,
)

logger = logging.getLogger("gateway.metering")

CHUNK = 32  # requests' worth of one grant at most (a top-up is asked at half of it)
SHARE = 16  # an allowance takes at most this fraction of the least headroom (1/SHARE)
SMALLEST = 4  # requests' worth below which no allowance is granted
HOT, HOT_S = 8, 10  # reservations of a level in one process within HOT_S s before one is asked
IDLE_S = 1.0
MAX_AGE_S = 60.0  # far below the lease's 900 s: the sweeper never takes an allowance in use
_new = tuple.__new__
Hold = tuple[int, int, int, int]  # a chunk per index of Amounts


class LevelShape(NamedTuple):
    """One level's window counters in one plan: what an allowance of it covers."""

    name: tuple[str, str]  # (level, id)
    # per counter: position in the plan's checks, key, field, index in Amounts, limit, ttl
    counters: tuple[tuple[int, str, str, int, int, int], ...]
    measures: tuple[int, ...]  # the indexes in Amounts it limits
    hashes: tuple[tuple[str, tuple[str, ...], tuple[int, ...], int], ...]  # key, fields, idx, ttl


@dataclass(slots=True, eq=False)
class Allowance:
    """A chunk of one level's counters held by this process."""

    shape: LevelShape
    grants: list[tuple[str, Hold]]  # (lease id, chunk) per grant: each has its own lease
    hold: list[int]  # granted in all per index of Amounts, in each window's counter
    left: list[int]  # of ``hold``, not taken by requests in flight or used
    in_flight: list[int]  # the estimates of its requests in flight
    room: list[int]  # ``rooms`` after the last grant: what a top-up is sized from
    refill: list[int]  # below this ``left`` (half the last chunk) a top-up is asked for
    born: float
    used_at: float
    open: bool = True

    def low(self) -> bool:
        """Whether ``left`` fell below half the last chunk in some measure."""
        left, refill = self.left, self.refill
        return any(left[index] < refill[index] for index in self.shape.measures)

    def add(self, lease: str, hold: Hold, room: list[int]) -> None:
        """A grant's chunk, added to what it holds."""
        self.grants.append((lease, hold))
        for index in self.shape.measures:
            self.hold[index] += hold[index]
            self.left[index] += hold[index]
        self.room = room
        self.refill = [amount // 2 for amount in hold]


class Use(NamedTuple):
    """What one admitted request took from one allowance (its estimate)."""

    allowance: Allowance
    need: Amounts


def shapes(checks: Sequence[Check], window_kinds: frozenset[str]) -> tuple[LevelShape, ...]:
    """The level window checks of a plan's ``checks``, one shape per level."""
    by_level: dict[tuple[str, str], list[tuple[int, str, str, int, int, int]]] = {}
    for position, (kind, counter) in enumerate(checks):
        if kind not in window_kinds:
            continue
        level, _, measure = kind.split(".")
        index = {"requests": 0, "tokens": 1, "usd": 3}[measure]
        name = (level, counter.key.split("}")[0])  # the level's hash tag: one per level
        entry = (position, counter.key, counter.field, index, counter.limit, counter.ttl_s)
        by_level.setdefault(name, []).append(entry)
    found = []
    for name, entries in by_level.items():
        hashes: dict[str, tuple[list[str], list[int], int]] = {}
        for _, key, field, index, _, ttl in entries:
            fields, indexes, _ = hashes.setdefault(key, ([], [], ttl))
            fields.append(field)
            indexes.append(index)
        found.append(
            LevelShape(
                name,
                tuple(entries),
                tuple(sorted({entry[3] for entry in entries})),
                tuple((k, tuple(f), tuple(i), t) for k, (f, i, t) in hashes.items()),
            )
        )
    return tuple(found)


def rooms(shape: LevelShape, decision: Decision, granted: bool) -> list[int]:
    """Per index of Amounts the least headroom of the level's windows after ``decision`` (-1:
    no limit in force): an exact reservation's (counters at their plan positions) or, when
    ``granted``, an allowance's (counters in ``shape.counters`` order)."""
    room = [-1, -1, -1, -1]
    for at, (position, _, _, index, _, _) in enumerate(shape.counters):
        position = at if granted else position
        limit = decision.limits[position]
        if limit < 0:
            continue
        left = limit - decision.used[position] - decision.granted[position]
        room[index] = left if room[index] < 0 else min(room[index], left)
    return room


def size(shape: LevelShape, need: Amounts, room: Sequence[int]) -> Hold | None:
    """The chunk to ask for: per measure the smaller of ``CHUNK`` requests' worth (``need``
    being one) and 1/``SHARE`` of the least headroom; None when that is under ``SMALLEST``
    requests' worth for any measure."""
    sizes = [0, 0, 0, 0]
    for index in shape.measures:
        each = 1 if index == 0 else need[index]
        if room[index] < 0:  # no limit in force (an override): nothing to hold
            continue
        chunk = min(CHUNK * each, room[index] // SHARE)
        if chunk < SMALLEST * each:
            return None
        sizes[index] = chunk
    return sizes[0], sizes[1], sizes[2], sizes[3]


def grant_counters(shape: LevelShape, hold: Sequence[int]) -> list[Counter]:
    """The counters an allowance of ``hold`` reserves: every window's, each the whole chunk."""
    return [
        Counter(key, field, hold[index], limit, ttl_s=ttl)
        for _, key, field, index, limit, ttl in shape.counters
    ]


def take(allowance: Allowance, need: Amounts, now: float) -> bool:
    """Admit ``need`` from the allowance if it fits in every measure."""
    left = allowance.left
    for index in allowance.shape.measures:
        if left[index] < need[index]:
            return False
    in_flight = allowance.in_flight
    for index in allowance.shape.measures:
        amount = need[index]
        left[index] -= amount
        in_flight[index] += amount
    allowance.used_at = now
    return True


def settled(uses: Sequence[Use], actual: Amounts) -> tuple[Aggregate, ...]:
    """The level writes of a request served from allowances: its actual usage while the
    allowance is open (the estimate comes back to it locally), the difference from its
    estimate once it has ended (the estimate was then left counted)."""
    found: list[Aggregate] = []
    for allowance, need in uses:
        counted = actual
        in_flight = allowance.in_flight
        for index in allowance.shape.measures:
            in_flight[index] -= need[index]
        if allowance.open:
            left = allowance.left
            for index in allowance.shape.measures:
                left[index] += need[index] - actual[index]
        else:
            counted = Amounts(*(a - n for a, n in zip(actual, need, strict=True)))
        for key, fields, indexes, ttl in allowance.shape.hashes:
            values = tuple([counted[index] for index in indexes])
            found.append(_new(Aggregate, (key, fields, values, ttl)))
    return tuple(found)


def returned(allowance: Allowance) -> SettleBatch:
    """End ``allowance``: give back its chunks but for what its requests in flight hold, and
    end each grant's lease (if the sweeper took one, its chunk is added back first)."""
    allowance.open = False
    increments = []
    for _, key, field, index, _, ttl in allowance.shape.counters:
        back = allowance.hold[index] - allowance.in_flight[index]
        if back:
            increments.append(Increment(key, field, -back, ttl))
    groups = dict.fromkeys(keys.lease(key) for _, key, *_ in allowance.shape.counters)
    ends = []
    for lease, hold in allowance.grants:
        held = tuple(
            (key, field, hold[index], ttl)
            for _, key, field, index, _, ttl in allowance.shape.counters
            if hold[index]
        )
        ends += [LeaseEnd(group, lease, held) for group in groups]
    return SettleBatch(tuple(increments), leases=tuple(ends))


class Allowances:
    """This process's open allowances, one per level at most, and the grants under way.

    ``give_back`` queues a settle batch (an allowance's end) for the meter's writer."""

    def __init__(
        self,
        store: Store,
        lease_prefix: str,
        lease_ttl_s: int,
        give_back: Callable[[SettleBatch], None],
    ) -> None:
        self._store = store
        self._lease_prefix = lease_prefix
        self._lease_ttl_s = lease_ttl_s
        self._give_back = give_back
        self._numbers = itertools.count()
        self._open: dict[tuple[str, str], Allowance] = {}
        self._asking: set[tuple[str, str]] = set()
        self._hot: dict[tuple[str, str], list[int]] = {}  # name → [HOT_S bucket, reservations]
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._open)

    def take(
        self, shapes: Sequence[LevelShape], need: Amounts, now: float
    ) -> tuple[Use, ...] | None:
        """The request's ``need`` from the open allowance of each level, or None (nothing
        taken) when one of them has none, or one that has ended or does not cover it."""
        uses: list[Use] = []
        for shape in shapes:
            allowance = self._open.get(shape.name)
            if allowance is None:
                _undone(uses)
                return None
            if (
                allowance.shape.counters is not shape.counters
                and allowance.shape.counters != shape.counters
            ) or now - allowance.born > MAX_AGE_S:  # a window rolled, a limit changed: ended
                self._end(allowance)
                _undone(uses)
                return None
            if not take(allowance, need, now):
                self._end(allowance)
                _undone(uses)
                return None
            uses.append(_new(Use, (allowance, need)))
            if allowance.low() and shape.name not in self._asking:  # topped up ahead
                self._ask(shape, size(shape, need, allowance.room), allowance, now)
        return tuple(uses)

    def reserved(
        self, shapes: Sequence[LevelShape], need: Amounts, decision: Decision, now: float
    ) -> None:
        """A request reserved its levels exactly (``decision``): ask for an allowance of each
        busy level without one, in the background."""
        if self._closed or not decision.ok:
            return
        bucket = int(now // HOT_S)
        for shape in shapes:
            name = shape.name
            if name in self._open or name in self._asking:
                continue
            hot = self._hot.get(name)
            if hot is None or hot[0] != bucket:
                if len(self._hot) > 10_000:
                    self._hot.clear()
                hot = self._hot[name] = [bucket, 0]
            hot[1] += 1
            if hot[1] < HOT:
                continue
            self._ask(shape, size(shape, need, rooms(shape, decision, False)), None, now)

    def _ask(
        self, shape: LevelShape, hold: Hold | None, into: Allowance | None, now: float
    ) -> None:
        """Ask for a chunk of ``hold`` in the background: a new allowance, or ``into``'s."""
        if hold is None or self._closed:
            return
        self._asking.add(shape.name)
        task = asyncio.get_running_loop().create_task(self._grant(shape, hold, into, now))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _grant(
        self, shape: LevelShape, hold: Hold, into: Allowance | None, now: float
    ) -> None:
        lease = Lease(f"{self._lease_prefix}.a{next(self._numbers)}", self._lease_ttl_s)
        try:
            decision = await self._store.reserve(grant_counters(shape, hold), None, lease)
        except StoreError as exc:  # it may have run: end its lease, which gives back its grants
            logger.debug("metering: an allowance was not granted: %s", exc)
            groups = dict.fromkeys(keys.lease(key) for _, key, *_ in shape.counters)
            self._give_back(SettleBatch((), leases=tuple(LeaseEnd(g, lease.id) for g in groups)))
            return
        finally:
            self._asking.discard(shape.name)
        if not decision.ok:
            return
        room = rooms(shape, decision, True)
        if into is not None and into.open and self._open.get(shape.name) is into:
            into.add(lease.id, hold, room)
            return
        allowance = Allowance(shape, [], [0] * 4, [0] * 4, [0] * 4, room, [0] * 4, now, now)
        allowance.add(lease.id, hold, room)
        if self._closed or shape.name in self._open:
            self._give_back(returned(allowance))
            return
        self._open[shape.name] = allowance

    def tend(self, now: float) -> None:
        """End the allowances idle for ``IDLE_S`` or older than ``MAX_AGE_S``."""
        for allowance in list(self._open.values()):
            if now - allowance.used_at > IDLE_S or now - allowance.born > MAX_AGE_S:
                self._end(allowance)

    async def aclose(self) -> None:
        """End every allowance and ask for none any more (shutdown)."""
        self._closed = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for allowance in list(self._open.values()):
            self._end(allowance)

    def _end(self, allowance: Allowance) -> None:
        if self._open.get(allowance.shape.name) is allowance:
            del self._open[allowance.shape.name]
        self._give_back(returned(allowance))


def _undone(uses: Sequence[Use]) -> None:
    """Put back what ``uses`` took (another level's allowance did not cover the request)."""
    for allowance, need in uses:
        for index in allowance.shape.measures:
            allowance.left[index] += need[index]
            allowance.in_flight[index] -= need[index]
