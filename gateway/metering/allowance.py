"""One level allowance: its chunk, what its requests take and give back, and its end (pure).

The design, the bound and when allowances are asked for and ended: ``allowances.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from gateway.metering.types import Amounts, Check
from gateway.store.port import (
    Aggregate,
    Counter,
    Decision,
    SettleBatch,
)

if TYPE_CHECKING:
    from gateway.metering.allowance_joint import Joint
    from gateway.metering.allowance_writes import Reader

CHUNK = 32  # requests' worth of a first grant at most (a top-up is asked at half of it)
MAX_CHUNK = 256  # requests' worth of a grant at most once grown (``GROW_S``)
GROW_S = 0.25  # a grant down to its top-up mark within this of the ask before: the next doubles
SHARE = 16  # an allowance takes at most this fraction of the least headroom (1/SHARE)
SMALLEST = 4  # requests' worth below which no allowance is granted
_new = tuple.__new__
Hold = tuple[int, int, int, int, int]  # a chunk per measure (``Need``'s indexes)
# a request's estimate per measure: ``Amounts`` and a slot in flight (index ``SLOT``)
Need = tuple[int, int, int, int, int]
SLOT = 4
# the indexes of ``Need`` a level may limit (no level limits audio): requests, tokens, micro-USD
# and a slot. The per-request steps (``Allowances.take``, ``fold``, ``settled``, ``undone``) are
# written out over all four; an index the level does not limit holds ``FREE`` in ``left``: the
# largest int CPython adds on its fast path, never short in practice (were it short, the
# allowance would end and the level be reserved exactly, as without one).
MEASURED = (0, 1, 3, SLOT)
FREE = (1 << 30) - 1
Ident = tuple[
    tuple[str, str, int, int, int], ...
]  # a level's counters: key, field, index, limit, ttl
# hashes with the same fields: their keys and times to live, the fields, their indexes in ``Need``
Group = tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...], tuple[int, ...]]
INDEXES = {"requests": 0, "tokens": 1, "usd": 3}


class LevelShape(NamedTuple):
    """One level's window counters in one plan: what an allowance of it covers."""

    name: tuple[str, str]  # (level, id)
    # per counter: position in the plan's checks, key, field, index in ``Need``, limit, ttl
    counters: tuple[tuple[int, str, str, int, int, int], ...]
    measures: tuple[int, ...]  # the indexes in ``Need`` it limits
    hashes: tuple[tuple[str, tuple[str, ...], tuple[int, ...], int], ...]  # key, fields, idx, ttl
    # ``hashes`` grouped by their fields: what ``seal`` writes as one ``SharedAggregate`` each
    # (every window hash of a level counts the same usage)
    groups: tuple[Group, ...]
    # the counters without their plan positions, one object per content (``_IDENTS``): an
    # allowance is for the same counters and limits when its ``ident`` *is* the plan's
    ident: Ident


@dataclass(slots=True, eq=False)
class Allowance:
    """A chunk of one level's counters held by this process."""

    shape: LevelShape
    grants: list[tuple[str, Hold]]  # (lease id, chunk) per grant: each has its own lease
    hold: list[int]  # granted in all per index of Amounts, in each window's counter
    left: list[int]  # of ``hold``, not taken by requests in flight or used
    # the estimates of its requests in flight, worked out when it ends (``in_flight_now``):
    # ``hold`` less ``left`` less what its finished requests used, so no request counts them
    in_flight: list[int]
    room: list[int]  # ``rooms`` after the last grant: what a top-up is sized from
    refill: list[int]  # below this ``left`` (half the last chunk) a top-up is asked for
    born: float
    used_at: float
    open: bool = True
    # its requests' writes to the level's counters, summed until ``queued`` leaves the buffer
    folded: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0, 0, 0])
    queued: SettleBatch | None = None  # the buffered batch ``seal`` fills in
    # the allowances it was last sealed with (itself first), their groups joined (``_joined``)
    joined: tuple[list[Allowance], tuple[Reader, ...] | None] | None = None
    # what its finished requests used while it was open, but for what ``folded`` holds (moved
    # here when sealed; once it has ended, ``in_flight`` is worked out and this is not read)
    spent: list[int] = dataclasses.field(default_factory=lambda: [0, 0, 0, 0, 0])
    held_from: int = 0  # ``grants`` before it were used up and given back (``used_up``)
    joint: Joint | None = None  # the open joint it is taken from with others (``allowance_joint``)
    asked_at: float = 0.0  # when its last top-up was asked for (0.0: none yet; ``grown``)
    contested: bool = False  # in two plans' joints at once: it goes on alone (``Allowances``)

    def in_flight_now(self) -> list[int]:
        """The estimates its requests in flight hold (``in_flight``), per index of ``Need``."""
        hold, left, spent, folded = self.hold, self.left, self.spent, self.folded
        together = zip(hold, left, spent, folded, strict=True)
        self.in_flight = [h - lf - s - f for h, lf, s, f in together]
        return self.in_flight

    def add(self, lease: str, hold: Hold, room: list[int]) -> None:
        """A grant's chunk, added to what it holds."""
        if not self.grants:  # the first: what the level does not limit is never short
            for index in MEASURED:
                if index not in self.shape.measures:
                    self.left[index] = FREE
        self.grants.append((lease, hold))
        for index in self.shape.measures:
            self.hold[index] += hold[index]
            self.left[index] += hold[index]
        self.room = room
        self.refill = [amount // 2 for amount in hold]

    def asked(self, now: float) -> None:
        """Its top-up asked for: taken from down to empty until the chunk comes, so no
        request goes ``Allowances.take``'s whole way meanwhile (its ``joint`` is measured by
        the take that asked)."""
        self.refill = [0, 0, 0, 0, 0]
        self.asked_at = now

    def not_topped_up(self) -> None:
        """Its top-up not granted: the mark back at half its last chunk, so a request below
        it goes ``take``'s whole way and asks again."""
        if self.open:
            self.refill = [amount // 2 for amount in self.grants[-1][1]]
            if self.joint is not None:
                self.joint.measure()


class Use(NamedTuple):
    """What one admitted request took from one allowance (its estimate)."""

    allowance: Allowance
    need: Need


def shapes(checks: Sequence[Check], window_kinds: frozenset[str]) -> tuple[LevelShape, ...]:
    """The level window checks of a plan's ``checks``, one shape per level: the same objects
    for the same checks at the same positions (a plan is rebuilt every second, its level
    counters change every minute)."""
    levels = tuple([(at, check) for at, check in enumerate(checks) if check.kind in window_kinds])
    found = _SHAPES.get((levels, window_kinds))
    if found is None:
        if len(_SHAPES) > 1_000:
            _SHAPES.clear()
        found = _SHAPES[levels, window_kinds] = _shapes(levels)
    return found


def _shapes(levels: Sequence[tuple[int, Check]]) -> tuple[LevelShape, ...]:
    by_level: dict[tuple[str, str], list[tuple[int, str, str, int, int, int]]] = {}
    for position, (kind, counter) in levels:
        level, _, measure = (*kind.split("."), "")[:3]
        index = INDEXES[measure] if measure else SLOT  # "<level>.parallel": in flight
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
        groups: dict[tuple[tuple[str, ...], tuple[int, ...]], list[tuple[str, int]]] = {}
        for key, (fields, indexes, ttl) in hashes.items():
            groups.setdefault((tuple(fields), tuple(indexes)), []).append((key, ttl))
        ident = tuple(
            (key, field, index, limit, ttl) for _, key, field, index, limit, ttl in entries
        )
        if len(_IDENTS) > 10_000:
            _IDENTS.clear()
        found.append(
            LevelShape(
                name,
                tuple(entries),
                tuple(sorted({entry[3] for entry in entries})),
                tuple((k, tuple(f), tuple(i), t) for k, (f, i, t) in hashes.items()),
                tuple(
                    (tuple([key for key, _ in targets]), tuple([ttl for _, ttl in targets]), f, i)
                    for (f, i), targets in groups.items()
                ),
                _IDENTS.setdefault(ident, ident),
            )
        )
    return tuple(found)


_SHAPES: dict[tuple[tuple[tuple[int, Check], ...], frozenset[str]], tuple[LevelShape, ...]] = {}
_IDENTS: dict[
    tuple[tuple[str, str, int, int, int], ...], tuple[tuple[str, str, int, int, int], ...]
] = {}


def rooms(shape: LevelShape, decision: Decision, granted: bool) -> list[int]:
    """Per index of Amounts the least headroom of the level's windows after ``decision`` (-1:
    no limit in force): an exact reservation's (counters at their plan positions) or, when
    ``granted``, an allowance's (counters in ``shape.counters`` order)."""
    room = [-1, -1, -1, -1, -1]
    for at, (position, _, _, index, _, _) in enumerate(shape.counters):
        position = at if granted else position
        limit = decision.limits[position]
        if limit < 0:
            continue
        left = limit - decision.used[position] - decision.granted[position]
        room[index] = left if room[index] < 0 else min(room[index], left)
    return room


def size(
    shape: LevelShape, need: Need, room: Sequence[int], grown: Hold | None = None
) -> Hold | None:
    """The chunk to ask for: per measure the smaller of ``CHUNK`` requests' worth (``need``
    being one), or twice ``grown`` up to ``MAX_CHUNK`` requests' worth, and 1/``SHARE`` of
    the least headroom; None when that is under ``SMALLEST`` requests' worth for any
    measure. Slots in flight are not grown: they come back as requests finish."""
    sizes = [0, 0, 0, 0, 0]
    for index in shape.measures:
        each = need[index] or 1  # a request and a slot are 1; a free request counts 1 too
        if room[index] < 0:  # no limit in force (an override): nothing to hold
            continue
        most = CHUNK * each
        if grown is not None and index != SLOT:
            most = min(max(most, 2 * grown[index]), MAX_CHUNK * each)
        chunk = min(most, room[index] // SHARE)
        if chunk < SMALLEST * each:
            return None
        sizes[index] = chunk
    return sizes[0], sizes[1], sizes[2], sizes[3], sizes[4]


def grown(allowance: Allowance, now: float) -> Hold | None:
    """Its last grant's chunk when that ran down to its top-up mark within ``GROW_S`` of the
    ask before (or of the first grant): a busy level's next chunk may be twice it, so its
    top-ups (each a reservation in the store, and a give-back once used up) stay a few per
    second at any rate. None otherwise."""
    since = allowance.asked_at or allowance.born
    return allowance.grants[-1][1] if now - since < GROW_S else None


def grant_counters(shape: LevelShape, hold: Sequence[int]) -> list[Counter]:
    """The counters an allowance of ``hold`` reserves: every window's, each the whole chunk."""
    return [
        Counter(key, field, hold[index], limit, ttl_s=ttl, sliding=index == SLOT)
        for _, key, field, index, limit, ttl in shape.counters
    ]


def settled(uses: Sequence[Use], actual: Amounts) -> tuple[Aggregate, ...]:
    """The level writes of a request served from allowances: its actual usage while the
    allowance is open (the estimate comes back to it locally), the difference from its
    estimate once it has ended (the estimate was then left counted)."""
    found: list[Aggregate] = []
    requests, tokens, _, usd = actual
    done: Need = (*actual, 0)  # a slot in flight is free again
    for allowance, need in uses:
        counted: tuple[int, ...] = done
        n0, n1, _, n3, n4 = need
        if allowance.open:
            left, spent = allowance.left, allowance.spent
            left[0] += n0 - requests
            left[1] += n1 - tokens
            left[3] += n3 - usd
            left[4] += n4
            spent[0] += requests
            spent[1] += tokens
            spent[3] += usd
        else:
            counted = tuple([a - n for a, n in zip(done, need, strict=True)])
        for key, fields, indexes, ttl in allowance.shape.hashes:
            if indexes[0] == SLOT and counted is done:  # a slot freed: nothing to write
                continue
            values = tuple([counted[index] for index in indexes])
            found.append(_new(Aggregate, (key, fields, values, ttl)))
    return tuple(found)


def fold(uses: Sequence[Use], actual: Amounts) -> list[Allowance]:
    """``settled``'s writes summed into each allowance's ``folded`` instead of returned: the
    allowances without a batch queued to carry them (the caller queues one for them all,
    whose leaving the buffer calls ``seal``)."""
    unqueued = []
    requests, tokens, _, usd = actual
    for allowance, need in uses:
        n0, n1, _, n3, n4 = need
        folded = allowance.folded
        if allowance.open:  # the estimate back, the usage taken and folded
            left = allowance.left
            left[0] += n0 - requests
            left[1] += n1 - tokens
            left[3] += n3 - usd
            left[4] += n4
            folded[0] += requests
            folded[1] += tokens
            folded[3] += usd
        else:  # ended: its estimate was left counted, the difference is folded
            folded[0] += requests - n0
            folded[1] += tokens - n1
            folded[3] += usd - n3
            folded[4] -= n4
        if allowance.queued is None:
            unqueued.append(allowance)
    return unqueued


def undone(uses: Sequence[Use]) -> None:
    """Put back what ``uses`` took (another level's allowance did not cover the request)."""
    for allowance, need in uses:
        n0, n1, _, n3, n4 = need
        left = allowance.left
        left[0] += n0
        left[1] += n1
        left[3] += n3
        left[4] += n4
