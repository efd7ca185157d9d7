"""settle.lua's arguments packed for Lua's ``struct.unpack``: the head, the writes and the ends.

Binary, not text: settle.lua matched ~600 characters of lines a request (~90 instructions a
character) and converted each number (~1.5k); ``struct.unpack`` reads them all in one C call.
A delta travels twice, as text for HINCRBY (a number argument costs Redis a conversion, ~2.4k)
and as a number to compare with its reply. Each part is packed by a ``struct.Struct`` made
once and joined (one ``struct.pack`` of a format built per call cost the gateway more than the
text lines did); a field's name and a delta's text are packed once. An increment's row (hash,
time to live, watch, field) is kept per form (``settle_increments.py``) and the call's deltas
follow the rows, packed together. A value the format cannot hold (no integer, a delta beyond
+-2**53, a negative or oversized time to live) fails the call here (``StoreRejected``).
"""

from __future__ import annotations

import struct
from collections.abc import KeysView, Sequence
from typing import cast

from gateway.store import keys
from gateway.store.port import MAX_STORED, SettleBatch, SharedAggregate, StoreRejected

# Lua's formats, in settle.lua's order (the head's texts are a store's constants, packed once)
HEAD_LUA = "<i4i4i4i4i4Bi4i4i4i4i4i4i4i8i4c0i4c0i4c0"
# per increment its hash index, ttl, watch and field (a store's constants for a form:
# ``settle_forms``), then the deltas as numbers, then as text (for HINCRBY)
INCREMENT_LUA = ("i4I4Bi4c0", "i8", "i4c0")
SHARED_LUA = "i4i4i4"  # first hash index, hashes, fields; then a ttl per hash, FIELD_LUA each
FIELD_LUA = "i4c0i8i4c0"  # field, delta, delta as text
LEASE_LUA = "i4i4i4i4c0"  # pair, its first grant's number in ARGV[3], how many, lease id
GRANT_LUA = "i4I4i4c0i4c0"  # hash index, ttl, amount as text, field
NAME_LUA = "i4c0"
RECORD_LUA = "i4i4c0"  # index list number, record

_HEAD = struct.Struct("<iiiiiBiiiiiii")
_INT = struct.Struct("<i")
_TWO = struct.Struct("<ii")
RECORD_HEAD = _TWO  # a record's: up to the record
GRANT = struct.Struct("<iIi")  # a grant's head: up to its amount's text's length
_LEASE = struct.Struct("<iiii")
_ROW = struct.Struct("<iIB")
_FIELD_TAIL = struct.Struct("<qi")
_THREE = struct.Struct("<iii")
NAMES: dict[str, bytes] = {}  # a field's name, packed (``name``)
TEXTS: dict[int, bytes] = {}  # a delta's text, packed (``text``)
_CONSTANTS: dict[tuple[int, int, int], bytes] = {}
_WRITES: dict[tuple[str, int], bytes] = {}  # a shared write's field, packed (``_write``)
_TTLS: dict[Sequence[int], bytes] = {}  # a shared write's times to live, packed (``_ttls``)
_MOST_CACHED = 4096


def row(index: int, ttl: int, watch: int, field: str) -> bytes:
    """An increment but its delta: hash index, ttl, watch, field."""
    return _ROW.pack(index, ttl, watch) + (NAMES.get(field) or name(field))


def deltas(values: Sequence[int]) -> bytes:
    """The increments' deltas: as numbers, then as text (for HINCRBY)."""
    packed = struct.pack(f"<{len(values)}q", *values)  # first: it refuses what is no integer
    return packed + b"".join(texts(values))


def texts(values: Sequence[int]) -> list[bytes]:
    """Each delta's text, packed (``text``)."""
    found = list(map(TEXTS.get, values))
    if all(found):  # a text is never empty
        return cast(list[bytes], found)
    return [one or text(value) for one, value in zip(found, values, strict=True)]


def text(value: int) -> bytes:
    """A delta as text, packed (``NAME_LUA``); kept in ``TEXTS`` (deltas repeat: few)."""
    raw = b"%d" % value
    packed = _INT.pack(len(raw)) + raw
    if len(TEXTS) < _MOST_CACHED and type(value) is int:
        TEXTS[value] = packed
    return packed


def shared_head(first: int, ttls: Sequence[int], count: int) -> bytes:
    """A shared write's head: its first hash's index, how many hashes and fields (``count``),
    each hash's seconds."""
    return _THREE.pack(first, len(ttls), count) + (_TTLS.get(ttls) or _ttls(ttls))


def shared_fields(writes: Sequence[tuple[str, int]]) -> list[bytes]:
    """A shared write's fields, each packed: name, delta as a number and as text."""
    parts = []
    for write in writes:
        packed = _WRITES.get(write)
        if packed is None or type(write[1]) is not int:  # bool and float equal some int
            packed = _write(*write)
        parts.append(packed)
    return parts


def _write(field: str, delta: int) -> bytes:
    """One field of a shared write: its name, its delta as a number and as text; kept per
    (field, delta) (a flush's level sums: requests and tokens repeat)."""
    if not -MAX_STORED <= delta <= MAX_STORED:
        raise StoreRejected(f"a delta settle.lua cannot take exactly: {delta}")
    text = b"%d" % delta
    packed = (NAMES.get(field) or name(field)) + _FIELD_TAIL.pack(delta, len(text)) + text
    if len(_WRITES) < _MOST_CACHED and type(delta) is int:
        _WRITES[field, delta] = packed
    return packed


def _ttls(ttls: Sequence[int]) -> bytes:
    """A shared write's times to live, packed; kept per tuple (a level's windows: few)."""
    packed = struct.pack(f"<{len(ttls)}I", *ttls)
    if len(_TTLS) < _MOST_CACHED and type(ttls) is tuple:
        _TTLS[ttls] = packed
    return packed


def lease_end(pair: int, lease_id: str, first: int, count: int) -> bytes:
    """The end of lease ``lease_id`` of pair ``pair``: its ``count`` grants in ARGV[3] from
    the ``first`` (1-based; 0, 0: none known)."""
    if "\t" in lease_id or "\n" in lease_id:  # one line in logs and the sweeper's payloads
        raise StoreRejected(f"a lease id settle.lua does not take: {lease_id!r}")
    raw = lease_id.encode()
    return _LEASE.pack(pair, first, count, len(raw)) + raw


def name(value: str) -> bytes:
    """A field's name (or a mark's), packed (``NAME_LUA``); a field's is kept in ``NAMES``
    (the config's names: few)."""
    raw = value.encode()
    packed = _INT.pack(len(raw)) + raw
    if len(NAMES) < _MOST_CACHED:
        NAMES[value] = packed
    return packed


def mark(value: str) -> bytes:
    """A mark's name, packed (``NAME_LUA``)."""
    raw = value.encode()
    return _INT.pack(len(raw)) + raw


def record(number: int, value: bytes) -> bytes:
    """A usage record and its index list's number, packed (``RECORD_LUA``)."""
    return _TWO.pack(number, len(value)) + value


def head(
    shape: tuple[int, int, int, int, int, int],
    counts: tuple[int, int, int, int, int],
    checks: tuple[int, Sequence[int]],
    constants: tuple[int, int, int],
) -> bytes:
    """``shape``: hashes, lease pairs, stream (0/1), index lists, mark (0/1), by_id (0/1);
    ``counts``: increments, shared writes, lease ends, marks to delete, records;
    ``checks``: how many hashes (the first) are checked only if listed, and those listed (an
    increment or a grant writes them); ``constants``: the stream's cap, the mark's and the
    index's seconds."""
    formed, listed = checks
    packed = _HEAD.pack(*shape, *counts, formed, len(listed))
    return (
        packed
        + (_CONSTANTS.get(constants) or _constants(constants))
        + struct.pack(f"<{len(listed)}i", *listed)
    )


def lua_format(counts: tuple[int, int, int, int, int], listed: int, shared: Sequence[str]) -> str:
    """ARGV[1]: the Lua format of a head and body with ``counts`` and ``listed`` hashes to
    check; ``shared``: each shared write's own."""
    increments, _, ends, names, records = counts
    return "".join([
        HEAD_LUA, "i4" * listed, *[column * increments for column in INCREMENT_LUA], *shared,
        LEASE_LUA * ends, NAME_LUA * names, RECORD_LUA * records,
    ])  # fmt: skip


def shared_lua(hashes: int, fields: int) -> str:
    """A shared write's Lua format (kept: a level's hashes and fields are few)."""
    found = _SHARED_LUAS.get((hashes, fields))
    if found is None:
        found = SHARED_LUA + "I4" * hashes + FIELD_LUA * fields
        if len(_SHARED_LUAS) < _MOST_CACHED:
            _SHARED_LUAS[hashes, fields] = found
    return found


_SHARED_LUAS: dict[tuple[int, int], str] = {}


def _constants(constants: tuple[int, int, int]) -> bytes:
    if not all(0 < value <= MAX_STORED for value in constants):
        raise StoreRejected(f"settle seconds or cap out of range: {constants}")
    packed = struct.pack("<q", constants[0]) + b"".join([mark(str(v)) for v in constants])
    if len(_CONSTANTS) < 64:
        _CONSTANTS[constants] = packed
    return packed


def shared_writes(
    alone: Sequence[SharedAggregate], index: dict[str, int], parts: list[bytes]
) -> list[str]:
    """Each shared aggregate of ``alone`` (none of its hashes in ``index``: ``apart``) packed
    into ``parts``, its hashes the next in ``index`` (the next KEYS); their Lua formats."""
    forms = []
    for hashes, ttls, names, values in alone:
        if len(names) != len(values):
            raise StoreRejected(f"{len(values)} values for the fields {names}")
        if all(values):  # most often: every field written (no list of the pairs); lengths
            # checked above, as ``strict=`` makes zip a keyword call, some 6k instructions
            writes: Sequence[tuple[str, int]] = tuple(zip(names, values))  # noqa: B905
        else:
            writes = [(name, value) for name, value in zip(names, values, strict=True) if value]
            if not writes:
                continue
        first = len(index) + 1
        parts += (shared_head(first, ttls, len(writes)), *shared_fields(writes))
        forms.append(shared_lua(len(ttls), len(writes)))
        index.update(_placed(hashes, first))
    return forms


def apart(found: Sequence[SharedAggregate], written: KeysView[str]) -> bool:
    """Whether no hash of ``found`` is in ``written`` or in another of them."""
    if len(found) == 1:  # most often: one flush's level usage
        return written.isdisjoint(found[0].keys)
    claimed: set[str] = set()
    for shared in found:
        hashes = shared.keys
        if not (written.isdisjoint(hashes) and claimed.isdisjoint(hashes)):
            return False
        claimed.update(hashes)
    return True


def _placed(hashes: tuple[str, ...], first: int) -> tuple[tuple[str, int], ...]:
    """``hashes`` with their indexes from ``first``: kept (a level's hashes, at the same place
    in most calls of one shape)."""
    found = _PLACED.get((hashes, first))
    if found is None:
        found = tuple(zip(hashes, range(first, first + len(hashes)), strict=True))
        if len(_PLACED) >= 4096:
            _PLACED.clear()
        _PLACED[hashes, first] = found
    return found


_PLACED: dict[tuple[tuple[str, ...], int], tuple[tuple[str, int], ...]] = {}


def records(
    batches: Sequence[SettleBatch], stream: bool, tag: str | None
) -> tuple[list[bytes], int, dict[str, int]]:
    """The batches' records packed (``RECORD_LUA``: two parts each), in one pass: the parts,
    how many records, and the index lists (name → number) in ``tag``'s slot."""
    lists: dict[str, int] = {}
    packed: list[bytes] = []
    head = RECORD_HEAD.pack
    for batch in batches:
        record = batch.record
        if record is None:
            continue
        name = batch.index
        if name and (tag is None or keys.slot_tag(name) == tag):
            number = lists.get(name) or lists.setdefault(name, len(lists) + 1)
        elif stream:
            number = 0
        else:
            continue
        packed += (head(number, len(record)), record)
    return packed, len(packed) // 2, lists
