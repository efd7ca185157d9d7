"""The in-process store used when ``REDIS_URL`` is unset: one process, same semantics.

Each operation runs without awaiting, so on one event loop it is atomic like the Lua script.
Expired keys are dropped lazily, on access, by the store's own clock. Leases, once-only
settle marks, counters kept at zero or more and the per-user record index behave as in Redis.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from gateway.store import keys
from gateway.store.port import (
    AUDIT_LOGS,
    AuditLog,
    ControlChange,
    Counter,
    CounterLayout,
    Decision,
    Lease,
    LeaseEnd,
    SettleBatch,
)
from gateway.store.rule import decide

Grant = tuple[str, str, int]  # key, field, amount
MAX_MARKS = 100_000
DOCUMENTS_PURGE_AT = 1024  # document hashes held before expired ones are swept


class MemoryStore:
    """``Store`` in dictionaries; usage records in a bounded deque."""

    def __init__(self, *, stream_maxlen: int, clock: Callable[[], float] = time.time) -> None:
        self._hashes: dict[str, dict[str, int]] = {}
        self._expiry: dict[str, float] = {}
        self._records: deque[tuple[int, bytes]] = deque(maxlen=stream_maxlen)
        self._maxlen = stream_maxlen
        self._index: dict[str, deque[bytes]] = {}
        self._leases: dict[str, tuple[float, list[Grant]]] = {}  # "group\nid" → lease
        self._marks: dict[str, float] = {}
        self._documents: dict[str, dict[str, bytes]] = {}
        self._purge_at = DOCUMENTS_PURGE_AT
        self._next_id = 1
        self._clock = clock
        self._control: dict[str, dict[str, bytes]] = {}
        self._control_version = 0
        self._audit: dict[AuditLog, deque[tuple[int, bytes]]] = {log: deque() for log in AUDIT_LOGS}
        self._audit_ids = itertools.count(1)

    async def reserve(
        self,
        counters: Sequence[Counter],
        override_key: str | None,
        lease: Lease | None = None,
        layout: CounterLayout | None = None,
    ) -> Decision:
        overrides = self._hash(override_key) if override_key else {}
        used = [self._hash(c.key).get(c.field, 0) for c in counters]
        decision = decide(counters, used, overrides)
        if decision.ok:
            grants: dict[str, list[Grant]] = {}
            for counter, amount in zip(counters, decision.granted, strict=True):
                self._incr(counter.key, counter.field, amount, counter.ttl_s)
                if amount:
                    grant = (counter.key, counter.field, amount)
                    grants.setdefault(keys.lease(counter.key), []).append(grant)
            if lease is not None:
                deadline = self._clock() + lease.ttl_s
                for group, granted in grants.items():
                    self._leases[f"{group}\n{lease.id}"] = (deadline, granted)
        return decision

    async def settle(self, batches: Sequence[SettleBatch], batch_id: str = "") -> list[list[int]]:
        now = self._clock()
        if batch_id:
            if self._marks.get(batch_id, 0.0) > now:
                return [[] for _ in batches]
            self._forget_marks(now)
            self._marks[batch_id] = now + keys.SETTLED_MARK_S
        watched: list[list[int]] = []
        for batch in batches:
            for end in batch.leases:
                self._settle_lease(end)
            values = []
            for inc in batch.all_increments():
                value = self._incr(inc.key, inc.field, inc.delta, inc.ttl_s)
                if inc.watch:
                    values.append(value)
            if batch.record is not None:
                self._records.append((self._next_id, batch.record))
                self._next_id += 1
                if batch.index is not None:
                    self._indexed(batch.index).append(batch.record)
                    self._expiry[batch.index] = now + keys.INDEX_TTL_S
            watched.append(values)
        return watched

    async def sweep_leases(self) -> int:
        now = self._clock()
        due = [name for name, (deadline, _) in self._leases.items() if deadline <= now]
        for name in due:
            self._end_lease(name)
        return len(due)

    async def user_records(self, user: str, days: Sequence[str]) -> list[bytes]:
        lists = [self._index.get(keys.user_records(user, day)) for day in days]
        return [record for found in lists if found for record in found]

    async def read_hashes(self, keys: Sequence[str]) -> list[dict[str, int]]:
        return [dict(self._hash(key)) for key in keys]

    async def read_reservations(self, lease_key: str) -> dict[str, int]:
        held: dict[str, int] = {}
        for name, (_, grants) in self._leases.items():
            if name.partition("\n")[0] == lease_key:
                for key, field, amount in grants:
                    held[f"{key}\t{field}"] = held.get(f"{key}\t{field}", 0) + amount
        return held

    async def read_view(
        self, keys: Sequence[str], lease_key: str
    ) -> tuple[list[dict[str, int]], dict[str, int]]:
        return await self.read_hashes(keys), await self.read_reservations(lease_key)

    async def write_hash(self, key: str, values: Mapping[str, int], delete: Sequence[str]) -> None:
        target = self._hashes.setdefault(key, {})
        for field in delete:
            target.pop(field, None)
        target.update(values)

    async def set_once(self, key: str, ttl_s: int) -> bool:
        if self._hash(key):
            return False
        self._incr(key, "set", 1, ttl_s)
        return True

    async def put_document(self, key: str, field: str, value: bytes, ttl_s: int) -> None:
        self._document_hash(key)[field] = value
        self._expiry[key] = self._clock() + ttl_s
        if len(self._documents) >= self._purge_at:  # e.g. cache entries never read again
            self._purge_documents()

    def _purge_documents(self) -> None:
        """Drop expired document hashes; next purge when their number has doubled."""
        now = self._clock()
        for key in [k for k in self._documents if self._expiry.get(k, now + 1) <= now]:
            del self._documents[key]
            self._expiry.pop(key, None)
        self._purge_at = max(DOCUMENTS_PURGE_AT, 2 * len(self._documents))

    async def get_document(self, key: str, field: str) -> bytes | None:
        return self._document_hash(key).get(field)

    async def get_documents(self, keys: Sequence[str], field: str) -> list[bytes | None]:
        return [self._document_hash(key).get(field) for key in keys]

    async def put_documents(self, field: str, documents: Sequence[tuple[str, bytes, int]]) -> None:
        for key, value, ttl_s in documents:
            await self.put_document(key, field, value, ttl_s)

    async def documents(self, key: str) -> list[bytes]:
        return list(self._document_hash(key).values())

    def _document_hash(self, key: str) -> dict[str, bytes]:
        expires = self._expiry.get(key)
        if expires is not None and expires <= self._clock():
            self._documents.pop(key, None)
            self._expiry.pop(key, None)
        return self._documents.setdefault(key, {})

    async def records_page(self, before: str | None, count: int) -> list[tuple[str, bytes]]:
        limit = int(before) if before else self._next_id
        page: list[tuple[str, bytes]] = []
        for record_id, record in reversed(self._records):
            if record_id < limit:
                page.append((str(record_id), record))
                if len(page) >= count:
                    break
        return page

    async def records_after(
        self, after: str | None, through: str, count: int
    ) -> tuple[list[bytes], str]:
        first, last = int(after) if after else -1, int(through)
        page: list[tuple[int, bytes]] = []
        for entry in self._records:  # oldest first
            if entry[0] > last or len(page) >= count:
                break
            if entry[0] > first:
                page.append(entry)
        return [record for _, record in page], str(page[-1][0]) if page else ""

    async def control_load(self) -> tuple[int, dict[str, dict[str, bytes]]]:
        return self._control_version, {k: dict(v) for k, v in self._control.items()}

    async def control_version(self) -> int:
        return self._control_version

    async def control_read(self, kind: str, id: str) -> bytes | None:
        return self._control.get(kind, {}).get(id)

    async def control_write(
        self,
        kind: str,
        id: str,
        value: bytes | None,
        audit: bytes,
        audit_maxlen: int,
        log: AuditLog = "operator",
    ) -> int:
        documents = self._control.setdefault(kind, {})
        if value is None:
            documents.pop(id, None)
        else:
            documents[id] = value
        self._control_version += 1
        await self.control_note(audit, audit_maxlen, log)
        return self._control_version

    async def control_note(
        self, audit: bytes, audit_maxlen: int, log: AuditLog = "operator"
    ) -> None:
        entries = self._audit[log]
        entries.append((next(self._audit_ids), audit))
        while len(entries) > audit_maxlen:
            entries.popleft()

    async def control_audit(
        self, before: str | None, count: int, log: AuditLog = "operator"
    ) -> list[tuple[str, bytes]]:
        entries = self._audit[log]
        limit = int(before) if before else (entries[-1][0] + 1 if entries else 0)
        page = [(str(i), entry) for i, entry in reversed(entries) if i < limit]
        return page[:count]

    def control_changes(self) -> AsyncIterator[ControlChange] | None:
        return None  # one process: the writer's own snapshot is refreshed by ``put``

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def _forget_marks(self, now: float) -> None:
        """Drop expired marks (the oldest first: they expire in the order they were set)."""
        for mark, until in list(itertools.islice(self._marks.items(), 100)):
            if until > now and len(self._marks) < MAX_MARKS:
                break
            del self._marks[mark]

    def _settle_lease(self, end: LeaseEnd) -> None:
        name = f"{end.group}\n{end.id}"
        if end.held is None:
            self._end_lease(name)
        elif self._leases.pop(name, None) is None:  # no longer held: add the grants back
            for key, field, amount, ttl in end.held:
                self._incr(key, field, amount, ttl)

    def _end_lease(self, name: str) -> None:
        """Give back what a lease still holds (keys that expired meanwhile are skipped)."""
        lease = self._leases.pop(name, None)
        for key, field, amount in lease[1] if lease else ():
            if self._hash(key):
                self._incr(key, field, -amount, 0)

    def _indexed(self, key: str) -> deque[bytes]:
        expires = self._expiry.get(key)
        if expires is not None and expires <= self._clock():
            self._index.pop(key, None)
            self._expiry.pop(key, None)
        return self._index.setdefault(key, deque(maxlen=self._maxlen))

    def _hash(self, key: str) -> dict[str, int]:
        expires = self._expiry.get(key)
        if expires is not None and expires <= self._clock():
            self._hashes.pop(key, None)
            self._expiry.pop(key, None)
        return self._hashes.get(key, {})

    def _incr(self, key: str, field: str, delta: int, ttl_s: int) -> int:
        """Add ``delta``, never leaving the field below zero (as the Lua scripts do)."""
        target = self._hash(key) or self._hashes.setdefault(key, {})
        target[field] = max(0, target.get(field, 0) + delta)
        if ttl_s:
            self._expiry[key] = self._clock() + ttl_s
        return target[field]
