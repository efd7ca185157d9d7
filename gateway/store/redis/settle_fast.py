"""settle.lua's arguments for the most common flush, in one function: the same bytes, less work.

A flush on a single Redis of requests whose forms have a plan, with no aggregates, and what
is spelled out (an allowance's sealed batch: grants given back, a level's shared write) only
on hashes of their own, is most of them; ``scripts`` packs it in the same order with the same
checks, in more calls (a Python call costs more than most of what it does here). The head and
the Lua format of a call writing every hash of its plan are kept per count and shared writes'
formats (``_HEADS``). Anything else takes ``scripts``' path (``call`` returns False before it
changed anything).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from gateway.store import keys
from gateway.store.port import SettleBatch, SettleForm, SharedAggregate, StoreRejected
from gateway.store.redis import settle_ends, settle_increments, settle_pack

Packed = tuple[list[str], list[str | int | bytes], list[tuple[str, str]]]  # KEYS, ARGV, watched
_Counts = tuple[int, int, int, int, int, int, int, int, int, int, int, int, tuple[str, ...]]

_HEADS: dict[_Counts, tuple[bytes, str]] = {}  # a call's counts → its head and Lua format
_new = tuple.__new__


def call(
    batches: Sequence[SettleBatch],
    maxlen: int,
    mark: str | None,
    stream: bool,
    by_id: bool,
    forget: Sequence[str],
    mark_ttl_s: int,
) -> Packed | Literal[False] | None:
    """``scripts.settle_call`` of ``batches`` without ``tag``; False: not such a flush."""
    groups: dict[SettleForm, list[Sequence[int]]] = {}  # each form's deltas
    shared: list[SharedAggregate] = []
    spelled_out = False
    for batch in batches:
        form = batch.form
        if batch.aggregates:
            return False
        if batch.shared:
            shared += batch.shared
        if batch.written:
            spelled_out = True
        if form is None:
            continue
        deltas = batch.deltas
        if len(deltas) != len(form.slots):
            raise StoreRejected(f"{len(deltas)} deltas for {len(form.slots)} slots")
        found = groups.get(form)
        if found is None:
            groups[form] = [deltas]
        else:
            found.append(deltas)
    plan = settle_increments.PLANS.get((tuple(groups), None)) if groups else None
    if plan is None:  # none made yet (or none can be): ``formed`` decides, as always
        return False
    extra = settle_increments.written(batches, None) if spelled_out else {}
    if extra and shared and not settle_pack.apart(shared, extra.keys()):
        settle_increments.merge_shared(shared, extra)  # as ``scripts.shared_alone``
        shared = []
    if extra and not plan.index.keys().isdisjoint(extra):
        return False  # summed into the plan's increments: ``scripts``' general path
    if shared and not settle_pack.apart(shared, plan.index.keys()):
        return False  # summed into the increments: ``scripts``' general path
    made = settle_increments.writes(plan, groups, spelled_out)
    shape = made.shape
    index = plan.index.copy()
    every = shape.every  # then none is listed (the list costs the script)
    listed: dict[int, None] = {} if every else dict.fromkeys(shape.listed)
    formed = 0 if every else len(index)  # the hashes after it are checked whatever
    leases = settle_ends.ends(batches, None)
    watched = plan.watched
    increments = len(made.values)
    if extra:  # after ``formed``: checked whatever, none listed
        written, increments, watched = settle_increments.with_written(made, extra, index, plan)
        parts = [b"", written]
    else:
        parts = [b"", made.packed]
    forms = tuple(settle_pack.shared_writes(shared, index, parts)) if shared else ()
    pairs, held = settle_ends.pack(leases, index, formed, listed, parts)
    packed, records, lists = settle_pack.records(batches, stream, None)
    if not (increments or forms or leases or records):
        return None
    if forget:
        parts += [settle_pack.mark(name) for name in forget]
    parts += packed
    all_keys = settle_ends.call_keys(index, pairs, stream, lists, mark)
    head = None
    if every:
        counts = (
            len(index), len(pairs), stream, len(lists), mark is not None, by_id, increments,
            len(leases), len(forget), records, maxlen, mark_ttl_s, forms,
        )  # fmt: skip
        head = _HEADS.get(counts)
    if head is None:
        shape_ = (
            len(index),
            len(pairs),
            int(stream),
            len(lists),
            int(mark is not None),
            int(by_id),
        )
        numbers = (increments, len(forms), len(leases), len(forget), records)
        head = (
            settle_pack.head(
                shape_, numbers, (formed, list(listed)), (maxlen, mark_ttl_s, keys.INDEX_TTL_S)
            ),
            settle_pack.lua_format(numbers, len(listed), forms),
        )
        if every:
            if len(_HEADS) >= 256:
                _HEADS.clear()
            _HEADS[counts] = head
    parts[0] = head[0]
    return all_keys, [head[1], b"".join(parts), held], watched
