"""settle.lua's lease ends and the grants they hold, packed for one call (``settle_pack.py``).

A call's grants (some six a request) are packed column by column, each column by one ``map``
(their hashes' indexes, heads, amounts as text, names), and their amounts checked at once;
when anything is refused, they are packed again one by one as before, so that the call fails
at the same value with the same error.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import cast

from gateway.store import keys
from gateway.store.port import MAX_STORED, LeaseEnd, SettleBatch, StoreRejected
from gateway.store.redis import settle_pack

Grant = tuple[str, str, int, int]  # hash, field, amount, ttl: a ``LeaseEnd``'s ``held``

_HEAD = struct.Struct("<iI")  # a grant's hash index and ttl: ``settle_pack.GRANT`` but the text
_INTS = {int}
_new = tuple.__new__
_LOWEST = -MAX_STORED
FEW = 12  # grants in a call packed one by one (``_few``); more, column by column


def ends(batches: Sequence[SettleBatch], tag: str | None) -> list[LeaseEnd]:
    """The batches' lease ends in ``tag``'s slot; without ``tag``, those naming one lease id
    as one (``scripts.one_end_per_lease``, without the list of them all)."""
    if tag is not None:
        found = [end for batch in batches for end in batch.leases]
        return [end for end in found if keys.slot_tag(end.group) == tag]
    merged: dict[str, LeaseEnd] = {}
    get = merged.get
    for batch in batches:
        for end in batch.leases:
            lease_id = end[1]
            first = get(lease_id)
            if first is None:
                merged[lease_id] = end
            elif first[2] is None or end[2] is None:
                merged[lease_id] = _new(LeaseEnd, (first[0], lease_id, None))
            else:
                merged[lease_id] = _new(LeaseEnd, (first[0], lease_id, first[2] + end[2]))
    return list(merged.values())


def pack(
    leases: Sequence[LeaseEnd],
    index: dict[str, int],
    formed: int,
    listed: dict[int, None],
    parts: list[bytes],
) -> tuple[dict[str, int], bytes]:
    """Each end of ``leases`` added to ``parts``; the pairs (lease group → number) and the
    grants packed (ARGV[3]). A grant's hash not in ``index`` is placed after the others; one
    at or before ``formed`` is ``listed`` (checked)."""
    pairs: dict[str, int] = {}
    grants: list[Grant] = []
    end = settle_pack.lease_end
    at = len(parts)
    try:
        for group, lease_id, held in leases:
            pair = pairs.get(group) or pairs.setdefault(group, len(pairs) + 1)
            if held is None:
                parts.append(end(pair, lease_id, 0, 0))
                continue
            parts.append(end(pair, lease_id, len(grants) + 1, len(held)))
            grants += held
        return pairs, _grants(grants, index, formed, listed) if grants else b""
    except Exception:  # a value refused: packed again one by one, to fail where it did
        del parts[at:]
        return _one_by_one(leases, index, formed, listed, parts)


def _grants(
    grants: list[Grant], index: dict[str, int], formed: int, listed: dict[int, None]
) -> bytes:
    if len(grants) <= FEW:
        return _few(grants, index, formed, listed)
    hashes, names, amounts, ttls = zip(*grants)  # noqa: B905 (``strict=`` costs a keyword call)
    if set(map(type, amounts)) != _INTS or min(amounts) < -MAX_STORED:
        raise StoreRejected("a grant settle.lua cannot take")
    if max(amounts) > MAX_STORED:
        raise StoreRejected("a grant settle.lua cannot take")
    found = list(map(index.get, hashes))
    if all(found):
        ats = cast(list[int], found)
    else:  # a hash no increment writes: placed in turn (an index is never 0)
        place = index.setdefault
        ats = [at or place(key, len(index) + 1) for at, key in zip(found, hashes, strict=True)]
    if formed:
        for at in ats:
            if at <= formed:
                listed[at] = None
    packed = [b""] * (3 * len(ats))
    packed[::3] = map(_HEAD.pack, ats, ttls)
    packed[1::3] = settle_pack.texts(amounts)
    named = list(map(settle_pack.NAMES.get, names))
    if all(named):
        packed[2::3] = cast(list[bytes], named)
    else:
        packed[2::3] = [
            one or settle_pack.name(name) for one, name in zip(named, names, strict=True)
        ]
    return b"".join(packed)


def _few(grants: list[Grant], index: dict[str, int], formed: int, listed: dict[int, None]) -> bytes:
    """``_grants`` one by one: cheaper for a few (each ``map`` costs a call)."""
    get, place, head = index.get, index.setdefault, _HEAD.pack
    texts, names = settle_pack.TEXTS, settle_pack.NAMES
    lowest, highest = _LOWEST, MAX_STORED  # locals: ``-MAX_STORED`` made a new int each grant
    packed: list[bytes] = []
    for key, field, amount, ttl in grants:
        if type(amount) is not int or not lowest <= amount <= highest:
            raise StoreRejected(f"a grant settle.lua cannot take exactly: {amount}")
        at = get(key) or place(key, len(index) + 1)
        if at <= formed:
            listed[at] = None
        text = texts.get(amount) or settle_pack.text(amount)
        packed += (head(at, ttl), text, names.get(field) or settle_pack.name(field))
    return b"".join(packed)


def _one_by_one(
    leases: Sequence[LeaseEnd],
    index: dict[str, int],
    formed: int,
    listed: dict[int, None],
    parts: list[bytes],
) -> tuple[dict[str, int], bytes]:
    pairs: dict[str, int] = {}
    place = index.setdefault
    held_parts: list[bytes] = []
    named, packed = settle_pack.NAMES, settle_pack.name
    grant, end = settle_pack.GRANT.pack, settle_pack.lease_end
    for group, lease_id, held in leases:
        pair = pairs.setdefault(group, len(pairs) + 1)
        if held is None:
            parts.append(end(pair, lease_id, 0, 0))
            continue
        parts.append(end(pair, lease_id, len(held_parts) // 3 + 1, len(held)))
        for key, name, amount, ttl in held:  # ``settle_pack.GRANT_LUA`` each
            if type(amount) is not int or not -MAX_STORED <= amount <= MAX_STORED:
                raise StoreRejected(f"a grant settle.lua cannot take exactly: {amount}")
            text = b"%d" % amount
            at = index.get(key) or place(key, len(index) + 1)
            if at <= formed:
                listed[at] = None
            held_parts += (grant(at, ttl, len(text)), text, named.get(name) or packed(name))
    return pairs, b"".join(held_parts)


def call_keys(
    index: dict[str, int],
    pairs: dict[str, int],
    stream: bool,
    lists: dict[str, int],
    mark: str | None,
) -> list[str]:
    """settle.lua's KEYS: the hashes, each lease pair's set and data, the stream, the index
    lists, the mark."""
    found = list(index)
    for name in pairs:
        found += (name, keys.lease_data(name))
    if stream:
        found.append(keys.USAGE_STREAM)
    if lists:
        found += lists
    if mark:
        found.append(mark)
    return found
