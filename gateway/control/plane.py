"""``ControlPlane``: run-time documents in the store, an in-memory ``Snapshot`` per process.

Every write goes to the store with an audit entry and bumps one version; every process keeps
the whole set of documents in memory (``snapshot``, read on the hot path without awaiting).
A change is applied incrementally when the process is exactly one version behind it: the
writer applies its own write, and a reader told of a write (Redis pub/sub names the version,
kind and id) reads just that document. Otherwise (a gap: several writes, a missed
announcement) the whole set is reloaded: on an announcement, and at the latest after one poll
of the version (``poll_interval_s``), so a missed announcement heals. On Redis Cluster the poll
is the only mechanism. When the store is down the last snapshot stays in force.

A snapshot made by one change says so (``change``: its kind and id), and shares every other
kind's mapping with the one before, so a subscriber can update what it built from just that
document (``KeyRing`` does) rather than rebuild from thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

from gateway.errors import StoreUnavailable
from gateway.store.port import AUDIT_LOGS, AuditLog, Store, StoreError

POLL_INTERVAL_S = 0.25
AUDIT_MAXLEN = 10_000
RETRY_S = 1.0  # after the announcement channel failed
logger = logging.getLogger("gateway.control")
EMPTY: Mapping[str, dict[str, Any]] = MappingProxyType({})


@dataclass(frozen=True)
class Snapshot:
    """Every run-time document at one version: kind → id → JSON document (do not mutate)."""

    version: int
    documents: Mapping[str, Mapping[str, dict[str, Any]]] = field(default_factory=dict)
    change: tuple[str, str] | None = None  # (kind, id) changed from ``version - 1``; None: loaded

    def kind(self, name: str) -> Mapping[str, dict[str, Any]]:
        """The documents of one kind ({} when there are none)."""
        return self.documents.get(name, EMPTY)

    def changed(
        self, version: int, kind: str, id: str, document: dict[str, Any] | None
    ) -> Snapshot:
        """The next snapshot: this one with ``kind``/``id`` set (None: deleted); the other
        kinds' mappings are shared, not copied."""
        by_id = dict(self.kind(kind))
        if document is None:
            by_id.pop(id, None)
        else:
            by_id[id] = document
        documents = {k: v for k, v in self.documents.items() if k != kind}
        if by_id:
            documents[kind] = by_id
        return Snapshot(version, documents, (kind, id))


class ControlPlane:
    """The store's run-time documents, mirrored in ``snapshot``; writes audited."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval_s: float = POLL_INTERVAL_S,
        audit_maxlen: int = AUDIT_MAXLEN,
    ) -> None:
        self.snapshot = Snapshot(0, {})
        self._store = store
        self._clock = clock
        self._interval = poll_interval_s
        self._audit_maxlen = audit_maxlen
        self._callbacks: list[Callable[[Snapshot], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loading = asyncio.Lock()
        self._jobs: list[tuple[float, Callable[[], Awaitable[None]]]] = []

    def subscribe(self, callback: Callable[[Snapshot], None]) -> None:
        """Call ``callback`` with every new snapshot (on the event loop, without awaiting)."""
        self._callbacks.append(callback)

    def every(self, interval_s: float, job: Callable[[], Awaitable[None]]) -> None:
        """Run ``job`` from the poll loop about every ``interval_s`` (its errors are logged)."""
        self._jobs.append((interval_s, job))

    async def read_counters(self, keys: Sequence[str]) -> list[dict[str, int]]:
        """Integer hashes of the store (for admin answers: spend, last use); raises
        ``StoreError``."""
        return await self._store.read_hashes(keys)

    async def write_counters(self, key: str, values: Mapping[str, int]) -> None:
        """Set fields of an integer hash of the store; raises ``StoreError``."""
        await self._store.write_hash(key, values, ())

    async def start(self) -> None:
        """Load once, then follow the store's announcements and poll its version."""
        if self._tasks:
            return
        try:
            await self._load()
        except StoreError as exc:
            logger.warning("control plane: first load failed (retrying): %s", exc)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._poll()))
        if self._store.control_changes() is not None:
            self._tasks.append(loop.create_task(self._listen()))

    async def aclose(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh(self) -> None:
        """Reload now if the stored version moved."""
        stored = await self._store.control_version()
        if stored == self.snapshot.version:
            return
        async with self._loading:
            if stored != self.snapshot.version:  # a write of this process may have caught up
                await self._load_all()

    async def put(
        self,
        kind: str,
        id: str,
        document: dict[str, Any] | None,
        *,
        actor: str,
        action: str,
        audit: dict[str, Any] | None = None,
        log: AuditLog = "operator",
    ) -> Snapshot:
        """Write (None deletes) one document with an audit entry; return the refreshed
        snapshot (``StoreUnavailable``, a 503, when the store is down). ``audit`` replaces the
        recorded ``before``/``after`` (pass redacted ones when a document holds a secret) and
        may add fields. ``log``: "user" for a change a user made to what they own, kept apart
        from the operators' history (each log is capped on its own)."""
        entry: dict[str, Any] = {
            "at": self._clock(),
            "actor": actor,
            "action": action,
            "kind": kind,
            "id": id,
            "before": self.snapshot.kind(kind).get(id),
            "after": document,
        }
        entry.update(audit or {})
        value = None if document is None else json.dumps(document, separators=(",", ":"))
        try:
            version = await self._store.control_write(
                kind,
                id,
                value.encode() if value is not None else None,
                json.dumps(entry, separators=(",", ":"), default=str).encode(),
                self._audit_maxlen,
                log,
            )
            await self._apply(version, kind, id, partial(_given, _copy(document)))
        except StoreError as exc:
            logger.warning("control plane: write of %s %s failed: %s", kind, id, exc)
            raise StoreUnavailable("The control plane's store is unavailable; try again") from None
        return self.snapshot

    async def note(
        self, kind: str, id: str, *, actor: str, action: str, before: Any, after: Any
    ) -> None:
        """Audit a change kept elsewhere in the store (e.g. a user's quota override); raises
        ``StoreUnavailable``."""
        entry = {
            "at": self._clock(),
            "actor": actor,
            "action": action,
            "kind": kind,
            "id": id,
            "before": before,
            "after": after,
        }
        try:
            await self._store.control_note(
                json.dumps(entry, separators=(",", ":"), default=str).encode(), self._audit_maxlen
            )
        except StoreError as exc:
            logger.warning("control plane: auditing %s %s failed: %s", kind, id, exc)
            raise StoreUnavailable("The control plane's store is unavailable; try again") from None

    async def audit_log(
        self, limit: int = 100, before: str | None = None, log: AuditLog | None = None
    ) -> list[dict[str, Any]]:
        """Audit entries, newest first, each with its ``entry_id`` and ``log`` (page with
        ``before``): of one log, or of both merged (None)."""
        logs = AUDIT_LOGS if log is None else (log,)
        found: list[tuple[tuple[int, ...], AuditLog, str, bytes]] = []
        try:
            for name in logs:
                page = await self._store.control_audit(before, limit, name)
                found += [(_order(entry_id), name, entry_id, raw) for entry_id, raw in page]
        except StoreError as exc:
            logger.warning("control plane: reading the audit log failed: %s", exc)
            raise StoreUnavailable("The control plane's store is unavailable; try again") from None
        found.sort(key=lambda item: item[0], reverse=True)
        entries = []
        for _, name, entry_id, raw in found[:limit]:
            with contextlib.suppress(ValueError):
                entry = json.loads(raw)
                if isinstance(entry, dict):
                    entries.append({"entry_id": entry_id, **entry, "log": name})
        return entries

    async def _load(self) -> None:
        async with self._loading:
            await self._load_all()

    async def _load_all(self) -> None:
        version, raw = await self._store.control_load()
        self._swap(Snapshot(version, _parsed(raw)))

    async def _apply(
        self,
        version: int,
        kind: str,
        id: str,
        document: Callable[[], Awaitable[dict[str, Any] | None]],
    ) -> None:
        """Bring the snapshot to ``version``, made by a change of ``kind``/``id`` to
        ``await document()``: applied alone when the snapshot is one version behind, else (a
        gap) by a whole reload; nothing when the snapshot already has it."""
        async with self._loading:
            if version <= self.snapshot.version:
                return
            if version != self.snapshot.version + 1:
                await self._load_all()
                return
            self._swap(self.snapshot.changed(version, kind, id, await document()))

    def _swap(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        for callback in self._callbacks:
            try:
                callback(snapshot)
            except Exception:  # one bad subscriber must not stop the others
                logger.exception("control plane: a subscriber failed")

    async def _read(self, kind: str, id: str) -> dict[str, Any] | None:
        """One document as stored now (one not a JSON object counts as absent)."""
        raw = await self._store.control_read(kind, id)
        return _parsed({kind: {id: raw}}).get(kind, {}).get(id) if raw is not None else None

    async def _poll(self) -> None:
        due = [time.monotonic() + interval for interval, _ in self._jobs]
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
            except StoreError as exc:
                logger.debug("control plane: version poll failed: %s", exc)
            now = time.monotonic()
            for index, (interval, job) in enumerate(self._jobs):
                if index >= len(due):
                    due.append(now + interval)
                elif now >= due[index]:
                    due[index] = now + interval
                    try:
                        await job()
                    except Exception:
                        logger.exception("control plane: a periodic job failed")

    async def _listen(self) -> None:
        while True:
            changes = self._store.control_changes()
            if changes is None:
                return
            try:
                async for change in changes:
                    if change.version <= self.snapshot.version:
                        continue  # this process's own write, or already loaded
                    if change.kind is None or change.id is None:
                        await self._load()
                    else:
                        await self._apply(
                            change.version,
                            change.kind,
                            change.id,
                            partial(self._read, change.kind, change.id),
                        )
            except StoreError as exc:
                logger.debug("control plane: announcements interrupted: %s", exc)
            await asyncio.sleep(RETRY_S)


def _order(entry_id: str) -> tuple[int, ...]:
    """An audit entry id as numbers ("1796000000000-3" or "42"), for merging the two logs."""
    try:
        return tuple(int(part) for part in entry_id.split("-"))
    except ValueError:
        return (0,)


async def _given(document: dict[str, Any] | None) -> dict[str, Any] | None:
    return document


def _copy(document: dict[str, Any] | None) -> dict[str, Any] | None:
    """The document as a reader would parse it back (the caller may go on mutating its own)."""
    return None if document is None else json.loads(json.dumps(document, default=str))


def _parsed(raw: Mapping[str, Mapping[str, bytes]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Decode every document; one that is not a JSON object is skipped (and logged)."""
    documents: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, by_id in raw.items():
        parsed: dict[str, dict[str, Any]] = {}
        for id, value in by_id.items():
            try:
                document = json.loads(value)
            except ValueError:
                document = None
            if isinstance(document, dict):
                parsed[id] = document
            else:
                logger.warning("control plane: ignoring %s %s: not a JSON object", kind, id)
        if parsed:
            documents[kind] = parsed
    return documents
