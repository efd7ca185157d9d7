"""settle.lua's packed arguments read back in Python, as the lines they replaced (for tests)."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from gateway.store.redis.scripts import SettleCall


@dataclass
class Settle:
    """A settle call's packed values: the head, and each part as the text lines it replaced."""

    head: tuple[int, ...]  # hashes, pairs, stream, lists, mark, by_id, the five counts, then
    # how many hashes are checked only if listed, and how many are
    constants: tuple[int, bytes, bytes, bytes]  # maxlen, its text, the mark's, the index's s
    increments: list[str] = field(default_factory=list)  # "index\tfield\tdelta\tttl\twatch"
    listed: tuple[int, ...] = ()  # the first hashes checked (an increment or a grant writes)
    shared: list[str] = field(default_factory=list)  # "first:ttl,ttl\tfield\tdelta..."
    ends: list[tuple[int, str, int, int]] = field(default_factory=list)  # pair, id, first, n
    marks: list[str] = field(default_factory=list)
    records: list[tuple[int, bytes]] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, form: str) -> tuple[int, ...]:
        values = struct.unpack_from("<" + form, self.data, self.at)
        self.at += struct.calcsize("<" + form)
        return values

    def text(self) -> bytes:
        (size,) = self.take("i")
        value = self.data[self.at : self.at + size]
        self.at += size
        return value


def read(call: SettleCall) -> Settle:
    """``call``'s ARGV[2] read back; fails unless its Lua format (ARGV[1]) names as many parts
    as the head counts and the data ends where the last part does."""
    form, data = call.args[0], call.args[1]
    assert isinstance(form, str) and isinstance(data, bytes)
    reader = _Reader(data)
    head = reader.take("iiiiiBiiiiiii")
    (maxlen,) = reader.take("q")
    found = Settle(head, (maxlen, reader.text(), reader.text(), reader.text()))
    increments, shared, ends, marks, records = head[6:11]
    found.listed = reader.take("i" * head[12])
    rows = []
    for _ in range(increments):
        at, ttl, watch = reader.take("iIB")
        rows.append((at, ttl, watch, reader.text().decode()))
    deltas = reader.take(f"{increments}q")
    for (at, ttl, watch, name), delta in zip(rows, deltas, strict=True):
        found.increments.append(f"{at}\t{name}\t{delta}\t{ttl}\t{watch}")
    for delta in deltas:
        assert reader.text() == b"%d" % delta
    for _ in range(shared):
        first, hashes, fields = reader.take("iii")
        ttls = reader.take("I" * hashes)
        line = f"{first}:{','.join(map(str, ttls))}"
        for _ in range(fields):
            name = reader.text().decode()
            (delta,) = reader.take("q")
            assert reader.text() == b"%d" % delta
            line += f"\t{name}\t{delta}"
        found.shared.append(line)
    for _ in range(ends):
        pair, first, count = reader.take("iii")
        found.ends.append((pair, reader.text().decode(), first, count))
    found.marks = [reader.text().decode() for _ in range(marks)]
    for _ in range(records):
        (number,) = reader.take("i")
        found.records.append((number, reader.text()))
    assert reader.at == len(data)
    fields = sum(line.count("\t") // 2 for line in found.shared)
    assert form.count("c0") == 3 + 2 * increments + 2 * fields + ends + marks + records
    return found
