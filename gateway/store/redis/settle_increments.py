"""settle.lua's increments: of formed batches from a plan made once, of others merged.

Requests of one shape (``SettleForm``: one user, model, day and layout) write the same fields
of the same hashes with the same times to live; only their deltas differ. A call's forms are
merged once into a ``Plan`` (each hash and field once, in the slot ``tag`` names when given):
the KEYS, each field's packed row (hash index, time to live, watch flag, name), and where each
form's deltas go. A call then sums the deltas of requests of one form, adds each form's into
the plan's slots, leaves out a delta of 0 that is not watched (as the general path does: no
write, and settle.lua's cost is per value), and packs the deltas in one ``struct.pack``.
Batches that spell their increments out, and forms that disagree on a field's time to live or
watch flag, take the general path: every write merged by key and field (``merged``), then
packed one by one (``spelled``). Per plan and set of slots written (``Shape``: most calls of a
plan write the same ones) the joined rows, the hashes they write and the deltas' format are
kept, so a call packs only its deltas.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import compress
from operator import add, itemgetter
from typing import Any, NamedTuple

from gateway.store import keys
from gateway.store.port import MAX_STORED, SettleBatch, SettleForm, SharedAggregate, StoreRejected
from gateway.store.redis import settle_pack

MOST_PLANS = 1024
MOST_SHAPES = 64  # per plan
_new = tuple.__new__


class Plan:
    """A call's increments but their amounts: ``keys`` (the first KEYS), per slot its packed
    row (hash index, ttl, watch, field), hash index and watch flag, per form where its deltas
    go (``places``; -1: not in the slot), and the watched (key, field) in order."""

    __slots__ = (
        "direct", "forms", "hashes", "index", "keys", "places", "rows", "shapes", "size",
        "slots", "watch_at", "watched",
    )  # fmt: skip

    def __init__(self, forms: Sequence[SettleForm], tag: str | None) -> None:
        where: dict[tuple[str, str], int] = {}
        index: dict[str, int] = {}
        slots: list[tuple[int, int, int, str]] = []  # hash index, ttl, watch, field
        self.places: list[list[int]] = []
        self.forms = forms
        for form in forms:
            places = []
            for key, field, ttl_s, watch in form.slots:
                if tag is not None and keys.slot_tag(key) != tag:
                    places.append(-1)
                    continue
                at = where.get((key, field))
                if at is None:
                    at = where[key, field] = len(slots)
                    slots.append((index.setdefault(key, len(index) + 1), ttl_s, int(watch), field))
                elif slots[at][1:3] != (ttl_s, int(watch)):
                    raise LookupError("forms disagree on a field's time to live or watch")
                places.append(at)
            self.places.append(places)
        self.size = size = len(slots)
        self.keys = list(index)
        self.index = index  # key → its KEYS index (a call copies it: it places more)
        self.direct = len(forms) == 1 and self.places[0] == list(range(size))
        self.rows = [settle_pack.row(*slot) for slot in slots]
        self.hashes = [slot[0] for slot in slots]
        self.slots = range(size)
        self.watch_at = [at for at, slot in enumerate(slots) if slot[2]]
        self.watched = [(self.keys[s[0] - 1], s[3]) for s in slots if s[2]]
        self.shapes: dict[tuple[int, ...], Shape] = {}

    def shape(self, live: tuple[int, ...]) -> Shape:
        """The ``Shape`` of a call writing the slots ``live``."""
        if len(self.shapes) >= MOST_SHAPES:
            self.shapes.clear()
        rows, hashes = self.rows, self.hashes
        listed = tuple(dict.fromkeys([hashes[at] for at in live]))
        numbers = _NUMBERS.get(len(live)) or _numbers(len(live))
        joined = b"".join([rows[at] for at in live])
        pick = itemgetter(*live) if len(live) > 1 else None  # (one index: not a tuple)
        found = Shape(joined, listed, len(listed) == len(self.keys), numbers, pick)
        self.shapes[live] = found
        return found


class Shape(NamedTuple):
    """What a plan's calls writing the same slots share: their rows joined, the hashes they
    write (in order), whether that is every hash of the plan, and the format of their deltas
    as numbers (``settle_pack.INCREMENT_LUA``'s second), and what takes their deltas from a
    plan's (None: one slot or none)."""

    rows: bytes
    listed: tuple[int, ...]
    every: bool
    numbers: struct.Struct
    pick: itemgetter[Any] | None


def _numbers(size: int) -> struct.Struct:
    found = _NUMBERS[size] = struct.Struct(f"<{size}q")
    return found


_NUMBERS: dict[int, struct.Struct] = {}


class Writes(NamedTuple):
    """A plan's writes in one call: their ``Shape``, deltas, rows and deltas packed, and
    whether a batch also spells out increments (``written``: not in the plan)."""

    shape: Shape
    values: Sequence[int]
    packed: bytes
    spelled_out: bool


PLANS: dict[tuple[tuple[SettleForm, ...], str | None], Plan | None] = {}
_SEEN: set[tuple[tuple[SettleForm, ...], str | None]] = set()  # once, with no plan yet


def formed(batches: Sequence[SettleBatch], tag: str | None) -> tuple[Plan, Writes] | None:
    """The plan of ``batches``' forms and its writes (deltas summed per field; those of 0 not
    watched left out); None when a batch spells out aggregates, none has a form, or the forms
    have no plan. Increments spelled out (an allowance's grants given back) are not in it:
    ``Writes.spelled_out`` says there are some (``written``)."""
    groups: dict[SettleForm, list[Sequence[int]]] = {}  # each form's deltas, summed after
    spelled_out = False
    for batch in batches:
        form = batch.form
        if batch.aggregates:
            return None
        if batch.written:
            spelled_out = True
        if form is None:
            continue
        found = groups.get(form)
        deltas = batch.deltas
        if len(deltas) != len(form.slots):
            raise StoreRejected(f"{len(deltas)} deltas for {len(form.slots)} slots")
        if found is None:
            groups[form] = [deltas]
        else:
            found.append(deltas)
    if not groups:
        return None
    forms = tuple(groups)
    try:
        plan = PLANS[forms, tag]
    except KeyError:
        if len(forms) > 1 and (forms, tag) not in _SEEN:
            # forms of several users seldom meet again in this order: a plan made for each
            # call cost more than the general path (measured), so only one seen twice gets one
            if len(_SEEN) >= MOST_PLANS:
                _SEEN.clear()
            _SEEN.add((forms, tag))
            return None
        plan = _plan(forms, tag)
    if plan is None:
        return None
    return plan, writes(plan, groups, spelled_out)


def writes(plan: Plan, groups: dict[SettleForm, list[Sequence[int]]], spelled_out: bool) -> Writes:
    """The writes of ``plan`` for each form's deltas (``groups``, in the plan's order)."""
    try:
        if plan.direct:
            group = groups[plan.forms[0]]
            totals = group[0] if len(group) == 1 else _summed(group)
        else:
            sums = map(_summed, groups.values())
            summed = [0] * plan.size
            for places, deltas in zip(plan.places, sums, strict=True):
                for at, delta in zip(places, deltas, strict=True):
                    if at >= 0:
                        summed[at] += delta
            totals = summed
    except TypeError as error:  # a delta that is no number, met while summing
        raise StoreRejected(f"a delta settle.lua cannot take: {error}") from error
    flags = totals
    if plan.watch_at:  # a watched slot is written whatever its delta
        flags = [*totals]
        for at in plan.watch_at:
            flags[at] = 1
    live = tuple(compress(plan.slots, flags))
    shape = plan.shapes.get(live) or plan.shape(live)
    if not live:  # ``tuple.__new__``: a NamedTuple's own is Python
        return _new(Writes, (shape, (), b"", spelled_out))
    if len(live) == len(totals):
        values = totals
    else:  # in C: a comprehension is a call of its own (Python 3.11), then a step a slot
        values = shape.pick(totals) if shape.pick else [totals[at] for at in live]
    try:
        if not -MAX_STORED <= min(values) <= max(values) <= MAX_STORED:
            raise StoreRejected(f"a delta settle.lua cannot take exactly: {[*values]}")
    except TypeError as error:  # a delta that is no number
        raise StoreRejected(f"a delta settle.lua cannot take: {error}") from error
    numbers = shape.numbers.pack(*values)  # first: it refuses what is no integer
    packed = b"".join([shape.rows, numbers, *settle_pack.texts(values)])
    return _new(Writes, (shape, values, packed, spelled_out))


def _summed(deltas: list[Sequence[int]]) -> Sequence[int]:
    """The deltas of one form's requests summed per slot (``sum`` adds integers in C)."""
    if len(deltas) == 1:
        return deltas[0]
    return list(map(sum, zip(*deltas)))  # noqa: B905 (lengths checked: ``formed``, ``merged``)


def written(batches: Sequence[SettleBatch], tag: str | None) -> dict[str, dict[str, list[int]]]:
    """The increments ``batches`` spell out in ``tag``'s slot (a delta, or watched), merged as
    ``merged`` merges them: key → field → [summed delta, longest ttl, watched]."""
    found: dict[str, dict[str, list[int]]] = {}
    for batch in batches:
        for key, field, delta, ttl_s, watch in batch.written:
            if (delta or watch) and (tag is None or keys.slot_tag(key) == tag):
                _merge(found, key, field, delta, ttl_s, watch)
    return found


def with_written(
    made: Writes, extra: dict[str, dict[str, list[int]]], index: dict[str, int], plan: Plan
) -> tuple[bytes, int, list[tuple[str, str]]]:
    """The plan's writes and, after them, the increments spelled out (``written``), their
    hashes added to ``index``: the increments packed, how many, and the watched fields."""
    rows, amounts, watched = [made.shape.rows], [*made.values], [*plan.watched]
    for key, fields in extra.items():
        at = 0
        for name, (delta, ttl, watch) in fields.items():
            if not (delta or watch):
                continue
            at = at or index.setdefault(key, len(index) + 1)
            if not -MAX_STORED <= delta <= MAX_STORED:
                raise StoreRejected(f"a delta settle.lua cannot take exactly: {delta}")
            rows.append(settle_pack.row(at, ttl, watch, name))
            amounts.append(delta)
            if watch:
                watched.append((key, name))
    return b"".join(rows) + settle_pack.deltas(amounts), len(amounts), watched


def _plan(forms: tuple[SettleForm, ...], tag: str | None) -> Plan | None:
    try:
        plan: Plan | None = Plan(forms, tag)
    except LookupError:
        plan = None
    if len(PLANS) >= MOST_PLANS:
        PLANS.clear()
    PLANS[forms, tag] = plan
    return plan


def merged(batches: Sequence[SettleBatch]) -> dict[str, dict[str, list[int]]]:
    """key → field → [summed delta, longest ttl, watched]; aggregates summed per key first.

    Runs once per store call over every request's increments (some forty each for a key in
    a team): written with comparisons in place of ``max``, the aggregates' values summed by
    ``map`` (``operator.add``), and fields by key, so a field is found by its name alone."""
    merged: dict[str, dict[str, list[int]]] = {}
    get = merged.get
    forms: dict[SettleForm, list[Sequence[int]]] = {}  # a form's deltas summed first
    for batch in batches:
        form = batch.form
        if form is not None:
            found = forms.get(form)
            if found is None:
                forms[form] = [batch.deltas]
            else:
                found.append(batch.deltas)
    for form, group in forms.items():  # its increments, then its aggregates (zeros too)
        deltas = _summed(group)
        plain = form.plain
        for at, (key, field, ttl_s, watch) in enumerate(form.slots):
            delta = deltas[at]
            if at >= plain:
                watch = False
            elif not (delta or watch):
                continue
            _merge(merged, key, field, delta, ttl_s, watch)
    for batch in batches:
        for key, field, delta, ttl_s, watch in batch.written:  # unpacked: some forty each
            if delta or watch:
                _merge(merged, key, field, delta, ttl_s, watch)
    sums: dict[tuple[str, tuple[str, ...]], tuple[list[int], int]] = {}
    for batch in batches:
        for key, names, values, ttl_s in batch.aggregates:
            entry = sums.get((key, names))
            if entry is None:
                sums[key, names] = (list(values), ttl_s)
            else:
                entry[0][:] = map(add, entry[0], values)
    for (key, names), (totals, ttl) in sums.items():
        fields = get(key)
        if fields is None:
            merged[key] = {name: [value, ttl, 0] for name, value in zip(names, totals, strict=True)}
            continue
        for name, value in zip(names, totals, strict=True):
            add_to(fields, name, value, ttl)
    return merged


def _merge(
    merged: dict[str, dict[str, list[int]]], key: str, field: str, delta: int, ttl: int, watch: bool
) -> None:
    """One write added to ``merged`` (key → field → [delta, longest ttl, watched])."""
    fields = merged.get(key)
    if fields is None:
        merged[key] = {field: [delta, ttl, 1 if watch else 0]}
        return
    add_to(fields, field, delta, ttl)
    if watch:
        fields[field][2] = 1


def merge_shared(found: Sequence[SharedAggregate], merged: dict[str, dict[str, list[int]]]) -> None:
    """Each shared aggregate of ``found`` added to ``merged``'s fields, hash by hash."""
    for hashes, ttls, names, values in found:
        for key, ttl in zip(hashes, ttls, strict=True):
            fields = merged.setdefault(key, {})
            for name, value in zip(names, values, strict=True):
                add_to(fields, name, value, ttl)


def add_to(fields: dict[str, list[int]], name: str, value: int, ttl: int) -> None:
    """``value`` added to a hash's merged field (value, longest time to live, ...)."""
    slot = fields.get(name)
    if slot is None:
        fields[name] = [value, ttl, 0]
    else:
        slot[0] += value
        if ttl > slot[1]:
            slot[1] = ttl


def spelled(
    merged: dict[str, dict[str, list[int]]], tag: str | None
) -> tuple[dict[str, int], list[tuple[str, str]], int, bytes]:
    """The writes of ``merged`` in ``tag``'s slot (a delta, or watched): their hashes' indexes,
    the watched (key, field), how many, and their rows and deltas packed."""
    index: dict[str, int] = {}
    watched = []
    rows, deltas = [], []
    row = settle_pack.row
    for key, fields in merged.items():
        if tag is not None and keys.slot_tag(key) != tag:
            continue
        for name, (delta, ttl, watch) in fields.items():
            if delta or watch:
                if not -MAX_STORED <= delta <= MAX_STORED:
                    raise StoreRejected(f"a delta settle.lua cannot take exactly: {delta}")
                rows.append(row(index.setdefault(key, len(index) + 1), ttl, watch, name))
                deltas.append(delta)
                if watch:
                    watched.append((key, name))
    return index, watched, len(rows), b"".join(rows) + settle_pack.deltas(deltas)
