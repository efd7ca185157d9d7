"""settle.lua's arguments as main packed them before forms (f5188d3), kept to compare with.

``settle_reference.lua`` is that commit's settle.lua; ``call`` its ``settle_call``, for batches
spelled out (``spelled``: a form's slots as the increments and aggregates it stands for).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from operator import add
from pathlib import Path

from gateway.store import keys
from gateway.store.port import MAX_STORED, Aggregate, SettleBatch, StoreRejected
from gateway.store.redis import scripts, settle_increments, settle_pack
from gateway.store.redis.scripts import SettleCall, one_end_per_lease, shared_alone

TEXT = scripts._COMMON + "\n" + (Path(__file__).parent / "settle_reference.lua").read_text()
_HEAD = struct.Struct("<iiiiiBiiiii")
_INCREMENT = struct.Struct("<iIBqi")
HEAD_LUA = "<i4i4i4i4i4Bi4i4i4i4i4i8i4c0i4c0i4c0"
INCREMENT_LUA = "i4I4Bi8i4c0i4c0"


def spelled(batch: SettleBatch) -> SettleBatch:
    """``batch`` with its form written out: its increments, and per run of aggregate slots of
    one hash an ``Aggregate`` (zero fields kept, as ``settlement`` made them)."""
    form = batch.form
    if form is None:
        return batch
    aggregates: list[Aggregate] = list(batch.aggregates)
    for at in range(form.plain, len(form.slots)):
        key, field, ttl_s, _ = form.slots[at]
        last = aggregates[-1] if len(aggregates) > len(batch.aggregates) else None
        if last is not None and last.key == key and last.ttl_s == ttl_s:
            aggregates[-1] = last._replace(
                fields=(*last.fields, field), values=(*last.values, batch.deltas[at])
            )
        else:
            aggregates.append(Aggregate(key, (field,), (batch.deltas[at],), ttl_s))
    return SettleBatch(
        batch.increments, batch.record, tuple(aggregates), batch.leases, batch.index, batch.shared
    )


def call(
    batches: Sequence[SettleBatch],
    maxlen: int,
    *,
    mark: str | None,
    stream: bool,
    by_id: bool,
    forget: Sequence[str] = (),
    tag: str | None = None,
    mark_ttl_s: int = keys.SETTLED_MARK_S,
) -> SettleCall | None:
    """f5188d3's ``settle_call`` of ``batches`` spelled out."""
    batches = [spelled(batch) for batch in batches]
    try:
        return _settle_call(batches, maxlen, mark, stream, by_id, forget, tag, mark_ttl_s)
    except struct.error as error:
        raise StoreRejected(f"a value settle.lua cannot take: {error}") from error


def _settle_call(
    batches: Sequence[SettleBatch],
    maxlen: int,
    mark: str | None,
    stream: bool,
    by_id: bool,
    forget: Sequence[str],
    tag: str | None,
    mark_ttl_s: int,
) -> SettleCall | None:
    index: dict[str, int] = {}
    watched = []
    parts: list[bytes] = [b""]
    named, head, packed = settle_pack.NAMES, _INCREMENT.pack, settle_pack.name
    merged = merged_increments(batches)
    alone = shared_alone(batches, merged, tag)
    for key, fields in merged.items():
        if tag is not None and keys.slot_tag(key) != tag:
            continue
        at = 0
        for name, (delta, ttl, watch) in fields.items():
            if delta or watch:
                if not at:
                    at = index.setdefault(key, len(index) + 1)
                if not -MAX_STORED <= delta <= MAX_STORED:
                    raise StoreRejected(f"a delta settle.lua cannot take exactly: {delta}")
                text = b"%d" % delta
                parts += (
                    head(at, ttl, watch, delta, len(text)),
                    text,
                    named.get(name) or packed(name),
                )
                if watch:
                    watched.append((key, name))
    increments = (len(parts) - 1) // 3
    shared_forms = []
    for hashes, ttls, names, values in alone:
        writes = [(name, value) for name, value in zip(names, values, strict=True) if value]
        if not writes:
            continue
        head = settle_pack.shared_head(len(index) + 1, ttls, len(writes))
        parts.append(b"".join([head, *settle_pack.shared_fields(writes)]))
        shared_forms.append(settle_pack.shared_lua(len(ttls), len(writes)))
        for key in hashes:
            index[key] = len(index) + 1
    leases = [end for batch in batches for end in batch.leases]
    if tag is not None:
        leases = [end for end in leases if keys.slot_tag(end.group) == tag]
    if tag is None:
        leases = one_end_per_lease(leases)
    pairs: dict[str, int] = {}
    place = index.setdefault
    held_parts: list[bytes] = []
    grant, end = settle_pack.GRANT.pack, settle_pack.lease_end
    for group, lease_id, held in leases:
        pair = pairs.setdefault(group, len(pairs) + 1)
        if held is None:
            parts.append(end(pair, lease_id, 0, 0))
            continue
        parts.append(end(pair, lease_id, len(held_parts) // 3 + 1, len(held)))
        for key, name, amount, ttl in held:
            if type(amount) is not int or not -MAX_STORED <= amount <= MAX_STORED:
                raise StoreRejected(f"a grant settle.lua cannot take exactly: {amount}")
            text = b"%d" % amount
            at = index.get(key) or place(key, len(index) + 1)
            held_parts += (grant(at, ttl, len(text)), text, named.get(name) or packed(name))
    records, lists = scripts._records(batches, stream=stream, tag=tag)
    if not (increments or shared_forms or leases or records):
        return None
    parts += [settle_pack.mark(name) for name in forget]
    parts += [settle_pack.record(number, record) for number, record in records]
    all_keys = list(index)
    for name in pairs:
        all_keys += [name, keys.lease_data(name)]
    all_keys += [keys.USAGE_STREAM] if stream else []
    all_keys += list(lists)
    all_keys += [mark] if mark else []
    shape = (len(index), len(pairs), int(stream), len(lists), int(mark is not None), int(by_id))
    counts = (increments, len(shared_forms), len(leases), len(forget), len(records))
    constants = (maxlen, mark_ttl_s, keys.INDEX_TTL_S)
    parts[0] = (
        _HEAD.pack(*shape, *counts)
        + struct.pack("<q", constants[0])
        + b"".join([settle_pack.mark(str(value)) for value in constants])
    )
    lua = "".join([
        HEAD_LUA, INCREMENT_LUA * increments, *shared_forms,
        settle_pack.LEASE_LUA * len(leases), settle_pack.NAME_LUA * len(forget),
        settle_pack.RECORD_LUA * len(records),
    ])  # fmt: skip
    return SettleCall(all_keys, [lua, b"".join(parts), b"".join(held_parts)], watched)


def merged_increments(batches: Sequence[SettleBatch]) -> dict[str, dict[str, list[int]]]:
    """f5188d3's: key → field → [summed delta, longest ttl, watched]."""
    merged: dict[str, dict[str, list[int]]] = {}
    get = merged.get
    for batch in batches:
        for key, field, delta, ttl_s, watch in batch.increments:
            if delta or watch:
                fields = get(key)
                if fields is None:
                    merged[key] = {field: [delta, ttl_s, 1 if watch else 0]}
                    continue
                slot = fields.get(field)
                if slot is None:
                    fields[field] = [delta, ttl_s, 1 if watch else 0]
                else:
                    slot[0] += delta
                    if ttl_s > slot[1]:
                        slot[1] = ttl_s
                    if watch:
                        slot[2] = 1
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
            settle_increments.add_to(fields, name, value, ttl)
    return merged
