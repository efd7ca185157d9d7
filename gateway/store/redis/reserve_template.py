"""reserve.lua's arguments for a ``CounterLayout``'s counters, their layout packed once.

``reserve_pack.layout`` packs every counter's key, field, limit and cap on every call; the
counters of one plan differ only in their amounts, so a template keeps the packed layout and
each call packs its amounts alone (the same bytes: ``tests/store/test_reserve_template.py``).
Both of reserve.lua's forms: a reservation sent alone, its layout and amounts in one argument;
one in a group, its layout (the same objects on every call, sent once per group) and its
amounts apart. Which one is known only when the call is sent, so ``ReserveCall`` has both.
The template also keeps both forms' commands packed in RESP around what changes per call
(``packed_alone``, ``packed_group``): hiredis packs each argument with a ``sprintf``, some
1.4k instructions each, seventeen arguments for a reservation sent alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.port import Counter, CounterLayout, Lease
from gateway.store.redis import reserve_pack, scripts
from gateway.store.redis.pipelined import pack

Call = tuple[list[str], scripts.Args]  # KEYS and ARGV


def reserve_call(
    counters: Sequence[Counter],
    override_key: str | None,
    lease: Lease | None,
    layout: CounterLayout | None,
    *,
    registry: bool,
) -> ReserveCall:
    """The reservation's call; its layout from ``layout``'s template when it fits. Packed
    here, not when sent: a value the format cannot hold fails this reservation alone."""
    lease_id = lease.id if lease is not None and counters else ""
    if layout is not None and lease is not None and counters:
        made = layout.prepared
        if type(made) is not ReserveTemplate:
            made = layout.prepared = ReserveTemplate(counters, override_key, registry, lease.ttl_s)
        if made.fits(counters, override_key, registry, lease.ttl_s):
            amounts = reserve_pack.amounts(counters)
            call = ReserveCall(made.names, made.form, made.alone, made.data, made.fields,
                               amounts, lease_id)  # fmt: skip
            call.template = made
            return call
    names, form, data, fields = reserve_pack.layout(
        counters, override_key, lease, registry=registry
    )
    alone = form + reserve_pack.AMOUNTS * len(counters)
    amounts = reserve_pack.amounts(counters)
    return ReserveCall(names, form, alone, data, fields, amounts, lease_id)


class ReserveCall:
    """One reservation's KEYS and ARGV for reserve.lua: alone (``scripts.reserve_args``), or
    in a group's form (``reserve_layout.layout_args``; ``grouped_reserve_args`` joins those)."""

    __slots__ = (
        "_alone",
        "_amounts",
        "_data",
        "_fields",
        "_form",
        "_lease_id",
        "_names",
        "template",
    )

    def __init__(
        self,
        names: list[str],
        form: str,
        alone: str,
        data: bytes,
        fields: bytes,
        amounts: bytes,
        lease_id: str,
    ) -> None:
        self._names, self._form, self._alone, self._data = names, form, alone, data
        self._fields, self._amounts, self._lease_id = fields, amounts, lease_id
        # the template it was made from (None: packed in full)
        self.template: ReserveTemplate | None = None

    def alone(self) -> Call:
        """``scripts.reserve_args``' answer."""
        data = self._data + self._amounts
        return self._names.copy(), [1, "", self._alone, data, self._lease_id, self._fields]

    def packed_alone(self) -> bytes:
        """``EVALSHA`` of reserve.lua with ``alone()``'s KEYS and ARGV, in RESP: from its
        template, only the two arguments that change from call to call are packed here."""
        if self.template is None:
            return pack(scripts.RESERVE.by_sha(*self.alone()))
        data = self._data + self._amounts
        lease_id = self._lease_id.encode()
        before, after = self.template.packed_around
        return b"%b$%d\r\n%b\r\n$%d\r\n%b\r\n%b" % (
            before, len(data), data, len(lease_id), lease_id, after)  # fmt: skip

    def in_group(self) -> Call:
        """``reserve_layout.layout_args``' answer."""
        args: scripts.Args = [1, 1, self._form, self._data, self._fields, ""]
        args += (1, self._lease_id, self._amounts)
        return self._names.copy(), args

    def packed_member(self) -> bytes:
        """Its four arguments in a group of its template's calls (``packed_group``)."""
        lease_id, amounts = self._lease_id.encode(), self._amounts
        return b"$0\r\n\r\n$1\r\n1\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            len(lease_id), lease_id, len(amounts), amounts)  # fmt: skip


def packed_group(calls: Sequence[ReserveCall]) -> bytes | None:
    """``EVALSHA`` of reserve.lua with ``reserve_layout.grouped_reserve_args``' KEYS and ARGV
    for ``calls``, in RESP, when all were made from one template (None otherwise): its keys
    and its layout packed once, each call's lease id and amounts here."""
    template = calls[0].template
    if template is None:
        return None
    size = b"%d" % len(calls)
    parts = [b"", template.group_keys, b"$%d\r\n%b\r\n" % (len(size), size), template.group_layout]
    for call in calls:
        if call.template is not template:
            return None
        parts.append(call.packed_member())
    parts[0] = b"*%d\r\n" % (template.group_arguments + 4 * len(calls))
    return b"".join(parts)


class ReserveTemplate:
    """The KEYS and packed layout of one ``CounterLayout``'s counters with leases of
    ``lease_s``, made once (``reserve_pack.layout``)."""

    __slots__ = (
        "_counters",
        "_lease_s",
        "_override_key",
        "_registry",
        "alone",
        "data",
        "fields",
        "form",
        "group_arguments",
        "group_keys",
        "group_layout",
        "names",
        "packed_around",
    )

    def __init__(
        self, counters: Sequence[Counter], override_key: str | None, registry: bool, lease_s: int
    ) -> None:
        lease = Lease("", lease_s)
        made = reserve_pack.layout(counters, override_key, lease, registry=registry)
        self.names, self.form, self.data, self.fields = made
        self.alone = self.form + reserve_pack.AMOUNTS * len(counters)  # the alone form's
        self._counters, self._override_key = len(counters), override_key
        self._registry, self._lease_s = registry, lease_s
        # the alone form's command in RESP (``pack``) before and after its two arguments that
        # change (the data with its amounts, the lease id): ~1.4k instructions per argument
        # packed by hiredis, 17 arguments in all
        whole = pack(scripts.RESERVE.by_sha(self.names, [1, "", self.alone, b"", "", self.fields]))
        empty = b"$0\r\n\r\n$0\r\n\r\n"
        tail = _unframed(pack([self.fields]))
        before = whole[: len(whole) - len(tail) - len(empty)]
        if before + empty + tail != whole:  # (RESP: it cannot)
            raise ValueError("reserve.lua's command does not end in its two empty arguments")
        self.packed_around = (before, tail)
        # the group form's (``packed_group``): EVALSHA, its sha and KEYS; its one layout
        keys: scripts.Args = [scripts.RESERVE.sha, len(self.names), *self.names]
        self.group_keys = _unframed(pack(["EVALSHA", *keys]))
        self.group_layout = _unframed(pack([1, self.form, self.data, self.fields]))
        self.group_arguments = 3 + len(self.names) + 5  # and four per reservation

    def fits(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        registry: bool,
        lease_s: int,
    ) -> bool:
        """Whether ``counters`` (of its layout) and the rest are what it was made for."""
        return (
            len(counters) == self._counters
            and override_key == self._override_key
            and registry is self._registry
            and lease_s == self._lease_s
        )


def _unframed(packed: bytes) -> bytes:
    """A command in RESP without its count of arguments: its arguments, to join with others."""
    return packed[packed.index(b"\r\n") + 2 :]
