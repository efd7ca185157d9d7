"""What a level allowance writes: its usage sealed into each flush, its used-up grants and its end.

The design and the bound: ``allowances.py``; the allowance itself and its per-request steps:
``allowance.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from gateway.metering.allowance import (
    SLOT,
    Allowance,
    Group,
    Hold,
    LevelShape,
)
from gateway.metering.allowance_joint import Joint
from gateway.store import keys
from gateway.store.port import Increment, LeaseEnd, SettleBatch, SharedAggregate

_new = tuple.__new__


def seal(allowances: Sequence[Allowance] | Sequence[Joint]) -> list[SettleBatch]:
    """Fill each allowance's queued batch with what it folded (the batch is leaving the buffer
    for the store): one ``SharedAggregate`` per group of the level's hashes (its window hashes,
    which count the same usage, are one). Once per flush per allowance; the allowances of one
    request's levels share one batch, and when they folded the same sums (an organization's
    and its team's, served to the same requests) their groups of the same fields are one
    ``SharedAggregate`` (``_joined``); so are a joint's members' (``_seal_joint``). Returns the
    ends of the grants that usage used up (``used_up``), to be written with the batch or after
    it."""
    if not allowances:
        return []
    first = allowances[0]
    if type(first) is Joint:
        return _seal_joint(first)
    allowances = [a for a in allowances if type(a) is Allowance]
    if not (len(allowances) > 1 and _seal_together(allowances)):
        _seal_each(allowances)
    ends: list[SettleBatch] = []
    for allowance in allowances:
        if allowance.open and len(allowance.grants) - allowance.held_from > 1:
            ends += used_up(allowance)
    return ends


def _seal_joint(joint: Joint) -> list[SettleBatch]:
    """``seal`` of a joint's batch: what its members folded together, written once for all
    (their groups joined, ``_joined``) and moved to the joint's ``spent`` (each member's at
    its push); once the joint has dissolved, its members' own (``Joint.dissolve`` gave each
    its part)."""
    batch = joint.queued
    joint.queued = None
    if batch is None:
        return []
    if not joint.open:
        return seal([member for member in joint.members if member.queued is batch])
    readers = joint.readers
    if readers is None:
        shapes = [member.shape for member in joint.members]
        groups = _joined(shapes) or tuple(group for shape in shapes for group in shape.groups)
        readers = joint.readers = _readers(groups)
    folded = joint.folded
    found: tuple[SharedAggregate, ...] = ()
    for hashes, ttls, fields, read in readers:
        values = read(folded)
        if any(values):
            found += (_new(SharedAggregate, (hashes, ttls, fields, values)),)
    batch.shared += found
    written = joint.spent  # written: moved to each member's ``spent`` (at its push)
    written[0] += folded[0]
    written[1] += folded[1]
    written[3] += folded[3]
    joint.folded = [0, 0, 0, 0, 0]
    ends: list[SettleBatch] = []
    if joint.topped:
        for member in joint.members:
            if len(member.grants) - member.held_from > 1:
                ends += used_up(member)
    return ends


def _seal_each(allowances: Sequence[Allowance]) -> None:
    for allowance in allowances:
        batch = allowance.queued
        if batch is None:
            continue
        folded = allowance.folded
        batch.shared += _aggregates(allowance.shape.groups, folded)
        if allowance.open:  # written: what its requests used moves to ``spent``
            spent = allowance.spent
            spent[0] += folded[0]
            spent[1] += folded[1]
            spent[3] += folded[3]
        allowance.folded = [0, 0, 0, 0, 0]
        allowance.queued = None


def _seal_together(allowances: Sequence[Allowance]) -> bool:
    """``seal``'s case of allowances of different levels on one batch with the same sums and
    fields: their groups written together (cached on the first allowance); False, nothing
    done, otherwise."""
    first = allowances[0]
    batch, folded = first.queued, first.folded
    if batch is None:
        return False
    for other in allowances:
        if other.queued is not batch or other.folded != folded:
            return False
    joined = first.joined
    if joined is None or joined[0] != allowances:
        groups = _joined([a.shape for a in allowances])
        joined = first.joined = (list(allowances), None if groups is None else _readers(groups))
    readers = joined[1]
    if readers is None:
        return False
    found: tuple[SharedAggregate, ...] = ()
    for hashes, ttls, fields, read in readers:  # the values by one C call per group
        values = read(folded)
        if any(values):
            found += (_new(SharedAggregate, (hashes, ttls, fields, values)),)
    batch.shared += found
    requests, tokens, _, usd, _ = folded  # the same sums in each: what ``seal`` moves
    for allowance in allowances:
        if allowance.open:
            spent = allowance.spent
            spent[0] += requests
            spent[1] += tokens
            spent[3] += usd
        allowance.folded = [0, 0, 0, 0, 0]
        allowance.queued = None
    return True


# a group of ``_joined`` with what reads its values from ``folded``, made once per join
Read = Callable[[list[int]], tuple[int, ...]]
Reader = tuple[tuple[str, ...], tuple[int, ...], tuple[str, ...], Read]


def _readers(groups: Sequence[Group]) -> tuple[Reader, ...]:
    return tuple(  # itemgetter of one index gives the value, not a tuple
        (h, t, f, itemgetter(*i) if len(i) > 1 else lambda folded, at=i[0]: (folded[at],))
        for h, t, f, i in groups
    )


def _joined(shapes: Sequence[LevelShape]) -> tuple[Group, ...] | None:
    """The groups of ``shapes`` (each a different level) with the same fields as one group
    each, their hashes in turn; None when the levels' groups differ in their fields."""
    names = {shape.name for shape in shapes}
    kinds = {tuple(sorted((f, i) for _, _, f, i in shape.groups)) for shape in shapes}
    if len(names) < len(shapes) or len(kinds) > 1:
        return None
    joined: dict[tuple[tuple[str, ...], tuple[int, ...]], tuple[list[str], list[int]]] = {}
    for shape in shapes:
        for hashes, ttls, fields, indexes in shape.groups:
            keys_, ttls_ = joined.setdefault((fields, indexes), ([], []))
            keys_.extend(hashes)
            ttls_.extend(ttls)
    return tuple((tuple(k), tuple(t), f, i) for (f, i), (k, t) in joined.items())


def _aggregates(groups: Sequence[Group], folded: list[int]) -> tuple[SharedAggregate, ...]:
    found = []
    for hashes, ttls, fields, indexes in groups:
        values = tuple([folded[index] for index in indexes])
        if any(values):
            found.append(_new(SharedAggregate, (hashes, ttls, fields, values)))
    return tuple(found)


def used_up(allowance: Allowance) -> list[SettleBatch]:
    """End the oldest grants (never the last) that the allowance's written usage has used up
    on some measure: each grant's chunk given back and its lease ended, and its part of what
    was written taken off ``spent`` (the rest of the chunk, unused, off ``left``).

    While a grant is held its chunk stays in the level's counters and the usage it covered is
    written there too: without this a counter would read, until the allowance ends, what its
    requests used twice (once as usage, once in the grant that covered it). With it, a counter
    reads a level's usage plus its open allowances' unused parts, in flight and up to about
    two grants of usage not yet given back. A dead process's counters stay exact: its grants
    left are swept back, the usage written stays."""
    joint = allowance.joint
    if joint is not None:  # its ``left`` read and changed alone
        joint.push()
    spent, hold, left = allowance.spent, allowance.hold, allowance.left
    measures = allowance.shape.measures
    ended: list[SettleBatch] = []
    while len(allowance.grants) - allowance.held_from > 1:
        lease, chunk = allowance.grants[allowance.held_from]
        if not any(chunk[m] and spent[m] >= chunk[m] for m in measures if m != SLOT):
            break
        allowance.held_from += 1
        for m in measures:
            carried = min(spent[m], chunk[m])
            spent[m] -= carried
            left[m] -= chunk[m] - carried
            hold[m] -= chunk[m]
        ended.append(_given_back(allowance.shape, lease, chunk))
    if joint is not None and ended:
        joint.measure()
    return ended


def _given_back(shape: LevelShape, lease: str, chunk: Hold) -> SettleBatch:
    """One grant's chunk given back to the level's counters and its lease ended."""
    increments = []
    held = []
    for _, key, field, index, _, ttl in shape.counters:
        if chunk[index]:
            increments.append(Increment(key, field, -chunk[index], ttl))
            held.append((key, field, chunk[index], ttl))
    groups = dict.fromkeys(keys.lease(key) for _, key, *_ in shape.counters)
    ends = tuple(LeaseEnd(group, lease, tuple(held)) for group in groups)
    return SettleBatch(tuple(increments), leases=ends)


def returned(allowance: Allowance) -> SettleBatch:
    """End ``allowance``: give back its chunks but for what its requests in flight hold, and
    end each grant's lease (if the sweeper took one, its chunk is added back first)."""
    if allowance.joint is not None:
        allowance.joint.dissolve()
    in_flight = allowance.in_flight_now()
    allowance.open = False
    increments = []
    for _, key, field, index, _, ttl in allowance.shape.counters:
        back = allowance.hold[index] - in_flight[index]
        if back:
            increments.append(Increment(key, field, -back, ttl))
    groups = dict.fromkeys(keys.lease(key) for _, key, *_ in allowance.shape.counters)
    ends = []
    for lease, hold in allowance.grants[allowance.held_from :]:
        held = tuple(
            (key, field, hold[index], ttl)
            for _, key, field, index, _, ttl in allowance.shape.counters
            if hold[index]
        )
        ends += [LeaseEnd(group, lease, held) for group in groups]
    return SettleBatch(tuple(increments), leases=tuple(ends))
