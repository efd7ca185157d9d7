"""reserve.lua's counters packed for Lua's ``struct.unpack``: their layout, and their amounts.

Binary, not text: matching text cost reserve.lua ~90 instructions a character and converting
a number ~900 (~100k a plain reservation); ``struct.unpack`` reads every value in one C call.
A value the format cannot hold (no integer, or beyond +-2**63; a limit beyond +-2**53, which a
Lua number holds exactly) fails the call here; the amounts are checked where they are made
(``metering/admit_checks.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter

from gateway.store import keys
from gateway.store.port import MAX_STORED, Counter, Lease, StoreRejected

AMOUNTS = "i8i8"  # a counter's fixed and flex amounts, in reserve.lua's struct format


def layout(
    counters: Sequence[Counter],
    override_key: str | None,
    lease: Lease | None,
    *,
    registry: bool,
) -> tuple[list[str], str, bytes, bytes]:
    """KEYS, and the layout of reserve.lua's counters (what every reservation of one plan
    sends alike): its ``struct`` format in Lua's words, its data, and apart the override
    fields' names (read only when the user's override hash holds a value)."""
    position: dict[str, int] = {}  # key → its index (1-based)
    ttls: list[int] = []
    form: list[str] = []  # Python's struct format of the counters
    values: list[int | bytes] = []
    named: list[str] = []  # and of their override fields' names
    names: list[int | bytes] = []
    # unpacked, not read by name: a team key has some forty counters
    for key, field, _, limit, limit_field, _, cap, cap_field, ttl_s, sliding in counters:
        at = position.get(key)
        if at is None:
            at = position[key] = len(position) + 1
            ttls.append(0)
        ttls[at - 1] = -ttl_s if sliding else ttl_s  # the last counter of a key names it
        if not (-MAX_STORED <= limit <= MAX_STORED and -MAX_STORED <= cap <= MAX_STORED):
            raise StoreRejected(f"a limit reserve.lua cannot take exactly: {limit}, {cap}")
        name, limit_name, cap_name = field.encode(), limit_field.encode(), cap_field.encode()
        form.append(f"ii{len(name)}sqq")
        values += (at, len(name), name, limit, cap)
        named.append(f"i{len(limit_name)}si{len(cap_name)}s")
        names += (len(limit_name), limit_name, len(cap_name), cap_name)
    all_keys = list(position)
    if override_key:
        all_keys.append(override_key)
    leased = lease is not None and bool(counters)
    if lease is not None and counters:
        group = keys.lease(counters[0].key)
        all_keys += (group, keys.lease_data(group))
        if registry:
            all_keys.append(keys.LEASE_REGISTRY)
    head = (len(position), 1 if override_key else 0, 1 if registry and leased else 0)
    lua = f"<i4BBi8{'i8' * len(ttls)}{'i4i4c0i8i8' * len(counters)}"
    python = f"<iBBq{'q' * len(ttls)}{''.join(form)}"
    data = _pack(python, *head, lease.ttl_s if lease else 0, *ttls, *values)
    return all_keys, lua, data, struct.pack("<" + "".join(named), *names)


def amounts(counters: Sequence[Counter]) -> bytes:
    """Each counter's fixed and flex amounts, packed for reserve.lua (``AMOUNTS``)."""
    packer = _AMOUNTS.get(len(counters))
    if packer is None:
        packer = _AMOUNTS[len(counters)] = struct.Struct("<" + "qq" * len(counters))
    try:
        return packer.pack(*chain.from_iterable(map(_FIXED_FLEX, counters)))
    except struct.error as error:
        raise StoreRejected(f"an amount reserve.lua cannot take: {error}") from error


def _pack(form: str, *values: int | bytes) -> bytes:
    try:
        return struct.pack(form, *values)
    except struct.error as error:
        raise StoreRejected(f"a limit reserve.lua cannot take: {error}") from error


_AMOUNTS: dict[int, struct.Struct] = {}  # per number of counters
_FIXED_FLEX = itemgetter(2, 5)  # a ``Counter``'s fixed and flex, read in C
