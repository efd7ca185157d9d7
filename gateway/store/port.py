"""The store interface: a few integer-counter operations both stores implement identically.

The stores know nothing about tiers, quotas or money: the meter turns a request into
``Counter`` checks and ``Increment`` deltas, and a store applies them atomically.
Every value is an integer (tokens, audio milliseconds, micro-USD); a limit of ``-1`` is
unlimited.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

UNLIMITED = -1
# The control plane's audit logs, each a stream capped on its own: what operators changed, and
# what users changed of their own (so no amount of user activity evicts operator history).
AuditLog = Literal["operator", "user"]
AUDIT_LOGS: tuple[AuditLog, ...] = ("operator", "user")
# The largest amount or limit a store accepts: exact as a Lua number (2**53) with room to add.
MAX_AMOUNT = 10**15 - 1
MAX_STORED = 2**53  # the largest value the scripts read (limits, counters)


class StoreError(Exception):
    """The store could not be reached or answered with an error (foreign errors converted)."""


class StoreRejected(StoreError):
    """The store refused this call's arguments or data (a script error, a key of the wrong
    type): trying again will not help, and the store itself is healthy."""


class Lease(NamedTuple):
    """Names a reservation so that its settle, or the sweeper once ``ttl_s`` passed, gives it
    back exactly once."""

    id: str
    ttl_s: int


class CounterLayout:
    """Names the counters of every reservation of one plan: the same keys, fields, limits,
    caps and times to live in the same order, only the amounts (``fixed``, ``flex``) differ.
    A store may keep in ``prepared`` what it works out from them once, for the later calls."""

    __slots__ = ("prepared",)

    def __init__(self) -> None:
        self.prepared: object = None


class Counter(NamedTuple):
    """One hash field a reservation checks and increments.

    ``fixed`` must fit entirely; ``flex`` (the requested output tokens) is first capped at
    ``cap`` and then shrunk to what remains under ``limit``, but at least 1 must fit.
    ``limit_field`` / ``cap_field`` name fields of the user's override hash that, when
    present, replace ``limit`` / ``cap``. ``ttl_s``: the key's time to live, set when the key
    is created (0: keep), or on every reservation when ``sliding``.
    """

    key: str
    field: str
    fixed: int
    limit: int = UNLIMITED
    limit_field: str = ""
    flex: int = 0
    cap: int = UNLIMITED
    cap_field: str = ""
    ttl_s: int = 0
    sliding: bool = False


@dataclass(slots=True)  # one per request: not frozen (a frozen __init__ is slow)
class Decision:
    """The answer to a reservation: per counter the value before, the limit and the grant."""

    used: tuple[int, ...]
    limits: tuple[int, ...]  # effective limits (overrides applied)
    granted: tuple[int, ...]  # amounts added (all zero when denied)
    denied: int | None = None  # index of the first counter that did not fit

    @property
    def ok(self) -> bool:
        return self.denied is None


class Increment(NamedTuple):
    """``HINCRBY key field delta``; ``watch`` returns the new value to the caller."""

    key: str
    field: str
    delta: int
    ttl_s: int = 0
    watch: bool = False


class Aggregate(NamedTuple):
    """Several fields of one hash incremented together (``values`` aligned with ``fields``);
    a store may sum many requests' aggregates for the same key before writing."""

    key: str
    fields: tuple[str, ...]
    values: tuple[int, ...]
    ttl_s: int = 0


class SharedAggregate(NamedTuple):
    """The same fields and values added to several hashes, each with its own time to live (a
    level's window hashes: a request counts once in each window); a store may write it once
    for all of them."""

    keys: tuple[str, ...]
    ttls: tuple[int, ...]  # per key its time to live (0: keep)
    fields: tuple[str, ...]
    values: tuple[int, ...]


class LeaseEnd(NamedTuple):
    """A settle's end of one lease group. ``held`` None: the grants are unknown (the reserve's
    reply was lost), so give back what the lease holds, if it is still there. Otherwise the
    increments already subtract the grants, and ``held`` (key, field, amount, ttl) is added
    back only when the lease is gone (swept, or lost with the store's data)."""

    group: str  # the lease sorted set (a settle names every group the counters' keys map to)
    id: str
    held: tuple[tuple[str, str, int, int], ...] | None = None


class SettleForm:
    """What requests of one shape write, but for the amounts: per slot a hash, a field, its
    time to live and whether its new value is returned, aligned with a ``SettleBatch``'s
    ``deltas``. The first ``plain`` slots are its ``increments``, the rest its aggregates'
    fields. Made once per shape and shared (a store may cache what it derives from one)."""

    __slots__ = ("plain", "slots", "watched")

    def __init__(self, slots: tuple[tuple[str, str, int, bool], ...], plain: int) -> None:
        self.slots = slots
        self.plain = plain
        self.watched = tuple([(key, field) for key, field, _, watch in slots if watch])

    def __repr__(self) -> str:
        return f"SettleForm({self.slots!r}, {self.plain})"


@dataclass(slots=True)  # one per request: not frozen (a frozen __init__ is slow)
class SettleBatch:
    """Everything one finished request writes: counter deltas and its usage record.

    ``written`` and ``aggregates`` spelled out, or (as well) ``form`` and its ``deltas``: a
    slot whose delta is 0 and is not watched writes nothing."""

    written: tuple[Increment, ...]
    record: bytes | None = None
    aggregates: tuple[Aggregate, ...] = ()
    leases: tuple[LeaseEnd, ...] = ()  # the reservation's lease, per hash-tag group
    index: str | None = None  # the per-user day list the record is indexed in
    shared: tuple[SharedAggregate, ...] = ()
    form: SettleForm | None = None
    deltas: tuple[int, ...] = ()

    @property
    def increments(self) -> tuple[Increment, ...]:
        """``written`` then the form's increments that write (a delta, or watched)."""
        if self.form is None:
            return self.written
        return self.written + tuple(self._formed(0, self.form.plain))

    def watched(self) -> list[tuple[str, str]]:
        """(key, field) of each watched increment, in order."""
        found = [(inc.key, inc.field) for inc in self.written if inc.watch]
        return found + list(self.form.watched) if self.form is not None else found

    def all_increments(self) -> list[Increment]:
        """``increments`` then the aggregates' (the form's first, then ``aggregates``) and the
        shared aggregates' non-zero fields, one ``Increment`` each."""
        form = self.form
        formed = self._formed(form.plain, len(form.slots)) if form is not None else []
        expanded = [
            Increment(aggregate.key, name, value, aggregate.ttl_s)
            for aggregate in self.aggregates
            for name, value in zip(aggregate.fields, aggregate.values, strict=True)
            if value
        ]
        spread = [
            Increment(key, name, value, ttl_s)
            for shared in self.shared
            for key, ttl_s in zip(shared.keys, shared.ttls, strict=True)
            for name, value in zip(shared.fields, shared.values, strict=True)
            if value
        ]
        return [*self.increments, *formed, *expanded, *spread]

    def _formed(self, start: int, stop: int) -> list[Increment]:
        form, deltas = self.form, self.deltas
        assert form is not None
        return [
            Increment(key, field, deltas[at], ttl_s, watch)
            for at, (key, field, ttl_s, watch) in enumerate(form.slots[start:stop], start)
            if deltas[at] or watch
        ]


class ControlChange(NamedTuple):
    """One announced control-plane write: the version it made, and the document it changed
    (None when the announcement did not say)."""

    version: int
    kind: str | None = None
    id: str | None = None


class Store(Protocol):
    """Usage counters, overrides, usage records and one-shot marks."""

    async def reserve(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        lease: Lease | None = None,
        layout: CounterLayout | None = None,
    ) -> Decision:
        """Check every counter and, only if all fit, add the grants and record them under
        ``lease`` (in a group ``keys.lease`` names: on one Redis the first counter's, on a
        cluster or in memory one per hash-tag group); atomically. ``layout``: the counters are
        laid out as every other call's with that layout (a store may reuse its work)."""
        ...

    async def settle(self, batches: Sequence[SettleBatch], batch_id: str = "") -> list[list[int]]:
        """End the leases, apply the increments (never below zero) and append the records;
        per batch, the watched new values (empty when ``batch_id`` was already applied)."""
        ...

    async def sweep_leases(self) -> int:
        """Give back the reservations whose lease expired; how many leases ended."""
        ...

    async def user_records(self, user: str, days: Sequence[str]) -> list[bytes]:
        """The records indexed for ``user`` on those days (``YYYYMMDD``), in write order."""
        ...

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, int]]: ...

    async def read_reservations(self, lease_key: str) -> dict[str, int]:
        """What the leases of one group (``keys.lease``) hold in flight: ``key\tfield`` →
        amount, summed over its leases."""
        ...

    async def read_view(
        self, keys: Sequence[str], lease_key: str
    ) -> tuple[list[dict[str, int]], dict[str, int]]:
        """``read_hashes(keys)`` and ``read_reservations(lease_key)`` together, the hashes in
        the lease's slot read at the same moment as the leases (no settle in between)."""
        ...

    async def write_hash(
        self, key: str, values: Mapping[str, int], delete: Sequence[str]
    ) -> None: ...

    async def set_once(self, key: str, ttl_s: int) -> bool:
        """True for the first caller only (for ``ttl_s`` seconds)."""
        ...

    async def put_document(self, key: str, field: str, value: bytes, ttl_s: int) -> None:
        """Write one field of a hash of documents (e.g. job records); the hash expires
        ``ttl_s`` after its last write."""
        ...

    async def get_document(self, key: str, field: str) -> bytes | None: ...

    async def get_documents(self, keys: Sequence[str], field: str) -> list[bytes | None]:
        """``get_document`` of each of ``keys`` (in one round trip on Redis)."""
        ...

    async def put_documents(self, field: str, documents: Sequence[tuple[str, bytes, int]]) -> None:
        """``put_document`` of each (key, value, ttl_s) (in one round trip on Redis)."""
        ...

    async def documents(self, key: str) -> list[bytes]:
        """Every document of the hash ``key``."""
        ...

    async def records_page(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        """Usage records, newest first, strictly older than the id ``before`` (None: newest)."""
        ...

    async def records_after(
        self, after: str | None, through: str, count: int
    ) -> tuple[list[bytes], str]:
        """Up to ``count`` usage records, oldest first, with ids after ``after`` (None: from
        the first) up to ``through`` included, and the id of the last one ("" if none)."""
        ...

    async def control_load(self) -> tuple[int, dict[str, dict[str, bytes]]]:
        """The control plane's version and every document (kind → id → JSON), atomically."""
        ...

    async def control_version(self) -> int:
        """The control plane's version (0 before the first write)."""
        ...

    async def control_read(self, kind: str, id: str) -> bytes | None:
        """One document as it is now (None: there is none)."""
        ...

    async def control_write(
        self,
        kind: str,
        id: str,
        value: bytes | None,
        audit: bytes,
        audit_maxlen: int,
        log: AuditLog = "operator",
    ) -> int:
        """Set (``value``) or delete (None) one document, append ``audit`` to the audit log
        ``log`` (capped at ``audit_maxlen``), bump the version and announce it; atomically.
        Returns the new version."""
        ...

    async def control_note(
        self, audit: bytes, audit_maxlen: int, log: AuditLog = "operator"
    ) -> None:
        """Append ``audit`` to the audit log alone (a change kept elsewhere in the store)."""
        ...

    async def control_audit(
        self, before: str | None, count: int, log: AuditLog = "operator"
    ) -> list[tuple[str, bytes]]:
        """Entries of the audit log ``log``, newest first, strictly older than the id
        ``before`` (None: newest). Ids of both logs are ordered alike (one sequence)."""
        ...

    def control_changes(self) -> AsyncIterator[ControlChange] | None:
        """Changes as they are announced (pub/sub), or None when the store cannot announce
        them (the memory store, Redis Cluster): readers then rely on polling."""
        ...

    async def ping(self) -> None:
        """Raise ``StoreError`` when the store cannot be reached."""
        ...

    async def aclose(self) -> None: ...
