"""The Lua scripts and their arguments (pure): what the Redis store sends, nothing it does.

Each script is ``is_int.lua`` and ``common.lua`` followed by its own body, so they share the
checks that run before any write (``int``, ``expect``) and the arithmetic that keeps counters at
zero or more; reserve.lua, which calls none of common.lua's functions, has ``is_int.lua`` alone.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import repeat
from operator import attrgetter
from textwrap import indent

from gateway.store import keys
from gateway.store.port import (
    Counter,
    Lease,
    LeaseEnd,
    SettleBatch,
    SharedAggregate,
    StoreRejected,
)
from gateway.store.redis import (
    reserve_pack,
    settle_ends,
    settle_fast,
    settle_increments,
    settle_pack,
)
from gateway.store.redis.settle_pack import apart

_IS_INT = resources.files("gateway.store.redis").joinpath("is_int.lua").read_text()
_COMMON = _IS_INT + "\n" + resources.files("gateway.store.redis").joinpath("common.lua").read_text()

# A settle's once-only mark lives ``keys.SETTLED_MARK_S``. On a standalone Redis the marks of
# batches whose reply arrived are deleted by a later batch (``FORGET_AFTER_S``), so only lost
# replies keep a mark a day. On a cluster every slot of every batch has one: ten minutes.
CLUSTER_SETTLED_MARK_S = 600
FORGET_AFTER_S = 60.0
_SHARED = attrgetter("shared")  # a batch's shared aggregates


Args = list[str | int | bytes]


@dataclass(frozen=True)
class Script:
    """A script's text and its SHA-1, and the commands that run it."""

    text: str
    sha: str

    def by_sha(self, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Args:
        """``EVALSHA`` with ``keys`` and ``args``."""
        return ["EVALSHA", self.sha, len(keys), *keys, *args]

    def by_text(self, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Args:
        """``EVAL`` with ``keys`` and ``args`` (Redis then holds the script by its sha)."""
        return ["EVAL", self.text, len(keys), *keys, *args]


def _script(name: str, *, common: bool = True, **parts: str) -> Script:
    """``is_int.lua``, ``common.lua`` (unless not ``common``: its functions are closures made
    on every call) and the script ``name``; each line ``-- <part>`` of it replaced by the file
    ``parts[part]``, indented as that line (Lua code written once, inlined twice)."""
    body = _read(name)
    for part, file in parts.items():
        code = _read(file)
        marker = rf"^( *)-- <{part}>\n"
        body, found = re.subn(marker, functools.partial(_indented, code), body, flags=re.M)
        if not found:
            raise ValueError(f"{name} has no line -- <{part}>")
    text = (_COMMON if common else _IS_INT) + "\n" + body
    return Script(text, hashlib.sha1(text.encode()).hexdigest())


def _read(name: str) -> str:
    return resources.files("gateway.store.redis").joinpath(name).read_text()


def _indented(code: str, line: re.Match[str]) -> str:
    return indent(code, line[1])


RESERVE = _script("reserve.lua", common=False, rule="rule.lua")
SETTLE = _script("settle.lua")
SWEEP = _script("sweep.lua")
VIEW = _script("view.lua")


def reserve_args(
    counters: Sequence[Counter],
    override_key: str | None,
    lease: Lease | None,
    *,
    registry: bool,
) -> tuple[list[str], Args]:
    """KEYS and ARGV for reserve.lua, one reservation alone: its layout and amounts in one
    packed argument. The lease is recorded in one group, the first counter's (``keys.lease``):
    on a single Redis one script reaches every key, and on a cluster the caller sends each
    slot's counters in a call of their own (``reserve_template.py`` makes the same from a
    template)."""
    names, form, data, fields = reserve_pack.layout(
        counters, override_key, lease, registry=registry
    )
    amounts = reserve_pack.amounts(counters)
    lease_id = lease.id if lease and counters else ""
    alone = form + reserve_pack.AMOUNTS * len(counters)
    return names, [1, "", alone, data + amounts, lease_id, fields]


@dataclass
class SettleCall:
    """One settle.lua call: the standalone batch, or one cluster slot's part of it."""

    keys: list[str]
    args: Args
    watched: list[tuple[str, str]]  # (key, field) of each watched value the script returns


def settle_call(
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
    """settle.lua's KEYS and ARGV (packed: ``settle_pack.py``); with ``tag``, only the writes
    in that slot (None when there are none). Increments to the same field are summed first
    (requests of one user or model share most of them). ``forget``: marks of earlier batches
    to delete. Without ``tag`` (a single Redis), the ends of one lease are one end, in the
    group its first end names: where ``reserve_args`` recorded the whole lease."""
    try:
        return _settle_call(batches, maxlen, mark, stream, by_id, forget, tag, mark_ttl_s)
    except struct.error as error:  # a value the format cannot hold: no integer, out of range
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
    if tag is None:
        fast = settle_fast.call(batches, maxlen, mark, stream, by_id, forget, mark_ttl_s)
        if fast is not False:
            return None if fast is None else SettleCall(*fast)
    found = settle_increments.formed(batches, tag)
    merged: dict[str, dict[str, list[int]]] = {}
    extra: dict[str, dict[str, list[int]]] = {}
    if found is not None:
        plan, made = found
        index = plan.index.copy()
        if made.spelled_out:  # written after the plan's, if on hashes of their own, the
            # shared writes on them summed in (as the general path does every write)
            extra = settle_increments.written(batches, tag)
            alone = shared_alone(batches, extra, tag)
            fits = apart(alone, index.keys()) and index.keys().isdisjoint(extra)
        else:
            alone = shared_in(batches, tag) if any(map(_SHARED, batches)) else []
            fits = not alone or apart(alone, index.keys())
        # else the general path adds them all to the increments, each field written once
        if fits:
            watched = plan.watched
            increments, shape = len(made.values), made.shape
            every = shape.every  # then none is listed (the list costs the script)
            listed = {} if every else dict.fromkeys(shape.listed)
        else:
            found = None
    if found is None:
        merged = settle_increments.merged(batches)
        alone = shared_alone(batches, merged, tag)
        index, watched, increments, written = settle_increments.spelled(merged, tag)
        parts, listed, every = [b"", written], {}, True
    formed = 0 if every else len(index)  # the hashes after it are checked whatever
    if found is not None:
        if extra:  # on hashes after ``formed``: checked whatever, none listed
            packed, increments, watched = settle_increments.with_written(made, extra, index, plan)
            parts = [b"", packed]
        else:
            parts = [b"", made.packed]
    shared_forms = settle_pack.shared_writes(alone, index, parts)
    leases = settle_ends.ends(batches, tag)
    pairs, held = settle_ends.pack(leases, index, formed, listed, parts)
    records, count, lists = settle_pack.records(batches, stream, tag)
    if not (increments or shared_forms or leases or count):
        return None
    if forget:
        parts += [settle_pack.mark(name) for name in forget]
    parts += records
    all_keys = settle_ends.call_keys(index, pairs, stream, lists, mark)
    shape_ = (len(index), len(pairs), int(stream), len(lists), int(mark is not None), int(by_id))
    counts = (increments, len(shared_forms), len(leases), len(forget), count)
    parts[0] = settle_pack.head(
        shape_, counts, (formed, list(listed)), (maxlen, mark_ttl_s, keys.INDEX_TTL_S)
    )
    lua = settle_pack.lua_format(counts, len(listed), shared_forms)
    return SettleCall(all_keys, [lua, b"".join(parts), held], watched)


def shared_alone(
    batches: Sequence[SettleBatch], merged: dict[str, dict[str, list[int]]], tag: str | None
) -> list[SharedAggregate]:
    """The batches' shared aggregates (their hashes in ``tag``'s slot), each to be written as
    one line. When a hash is in two of them, or in ``merged`` (another write of the call),
    they are all added to ``merged`` instead and none is returned: every field is then still
    written once with its deltas summed (a counter stops at zero, so a sum and its parts in
    turn could differ)."""
    found = shared_in(batches, tag)
    if apart(found, merged.keys()):
        return found
    settle_increments.merge_shared(found, merged)
    return []


def shared_in(batches: Sequence[SettleBatch], tag: str | None) -> list[SharedAggregate]:
    """The batches' shared aggregates, their hashes in ``tag``'s slot."""
    found = [shared for batch in batches if batch.shared for shared in batch.shared]
    if tag is not None:
        found = [shared for shared in map(_in_slot, found, repeat(tag)) if shared.keys]
    return found


def _in_slot(shared: SharedAggregate, tag: str) -> SharedAggregate:
    kept = [at for at, key in enumerate(shared.keys) if keys.slot_tag(key) == tag]
    if len(kept) == len(shared.keys):
        return shared
    hashes = tuple([shared.keys[at] for at in kept])
    return shared._replace(keys=hashes, ttls=tuple([shared.ttls[at] for at in kept]))


def one_end_per_lease(ends: Sequence[LeaseEnd]) -> list[LeaseEnd]:
    """The ends naming one lease id as one, in the first one's group, holding what they all
    hold (None, "give back what the lease holds", when any of them does not know)."""
    merged: dict[str, LeaseEnd] = {}
    for end in ends:  # merged by ``tuple.__new__``: NamedTuple's own is Python, and slower
        first = merged.get(end.id)
        if first is None:
            merged[end.id] = end
        elif first.held is None or end.held is None:
            merged[end.id] = tuple.__new__(LeaseEnd, (first.group, end.id, None))
        else:
            merged[end.id] = tuple.__new__(LeaseEnd, (first.group, end.id, first.held + end.held))
    return list(merged.values())


def _records(
    batches: Sequence[SettleBatch], *, stream: bool, tag: str | None
) -> tuple[list[tuple[int, bytes]], dict[str, int]]:
    """Per record the number of its index list (0: none) and the lists, for one call."""
    lists: dict[str, int] = {}
    records = []
    for batch in batches:
        if batch.record is None:
            continue
        indexed = batch.index is not None and _in(batch.index, tag)
        number = lists.setdefault(batch.index, len(lists) + 1) if indexed and batch.index else 0
        if stream or number:
            records.append((number, batch.record))
    return records, lists


def _in(key: str, tag: str | None) -> bool:
    return tag is None or keys.slot_tag(key) == tag


def slot_tags(batches: Sequence[SettleBatch]) -> list[str]:
    """Every slot (hash tag, or whole key) a batch writes to, the stream's last."""
    tags: dict[str, None] = {}
    for batch in batches:
        for key in _written_keys(batch):
            tags[keys.slot_tag(key)] = None
    tags.pop(keys.slot_tag(keys.USAGE_STREAM), None)
    return [*tags, keys.slot_tag(keys.USAGE_STREAM)]


def _written_keys(batch: SettleBatch) -> Iterable[str]:
    yield from (inc.key for inc in batch.all_increments())
    yield from (end.group for end in batch.leases)
    if batch.index is not None and batch.record is not None:
        yield batch.index


def watched_per_batch(
    batches: Sequence[SettleBatch], values: dict[tuple[str, str], int]
) -> list[list[int]]:
    """Each batch's watched fields' new values (every batch sees the total after the call)."""
    return [[values[watched] for watched in batch.watched()] for batch in batches]
