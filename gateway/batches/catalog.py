"""File and batch records kept as documents of the store, under the owner's hash tag.

An id is looked up in its caller's own hash only, so another user's id is simply not found.
Batches not yet final are also listed in one index (``batch id\towner`` → created ms) that
every replica's runner reads to find work, and every batch ever created in another
(``ALL``, read by the operators' dashboard page), from which a batch whose record is gone is
taken out as it is read.
"""

from __future__ import annotations

from gateway.batches.records import BatchRecord, FileRecord
from gateway.store.port import Store

PREFIX = "gw"
KEEP_S = 400 * 24 * 3600  # an owner's records hash lives this long after its last write
ACTIVE = f"{PREFIX}:batches:active"
ALL = f"{PREFIX}:batches:all"


def _files(owner: str) -> str:
    return f"{PREFIX}:{{u:{owner}}}:files"


def _batches(owner: str) -> str:
    return f"{PREFIX}:{{u:{owner}}}:batches"


class Catalog:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def put_file(self, record: FileRecord) -> None:
        await self._store.put_document(_files(record.owner), record.id, record.dumps(), KEEP_S)

    async def file(self, owner: str, file_id: str) -> FileRecord | None:
        raw = await self._store.get_document(_files(owner), file_id)
        return FileRecord.loads(raw) if raw else None

    async def files(self, owner: str) -> list[FileRecord]:
        """Newest first."""
        raws = await self._store.documents(_files(owner))
        found = [FileRecord.loads(raw) for raw in raws if raw]
        return sorted(found, key=lambda f: (f.created_at, f.id), reverse=True)

    async def delete_file(self, owner: str, file_id: str) -> None:
        """An empty document stands for a deleted file (the store has no document delete)."""
        await self._store.put_document(_files(owner), file_id, b"", KEEP_S)

    async def put_batch(self, record: BatchRecord) -> None:
        await self._store.put_document(_batches(record.owner), record.id, record.dumps(), KEEP_S)

    async def batch(self, owner: str, batch_id: str) -> BatchRecord | None:
        raw = await self._store.get_document(_batches(owner), batch_id)
        return BatchRecord.loads(raw) if raw is not None else None

    async def batches(self, owner: str) -> list[BatchRecord]:
        """Newest first."""
        found = [BatchRecord.loads(raw) for raw in await self._store.documents(_batches(owner))]
        return sorted(found, key=lambda b: (b.created_at, b.id), reverse=True)

    async def activate(self, record: BatchRecord) -> None:
        member = {f"{record.id}\t{record.owner}": record.created_at * 1000}
        await self._store.write_hash(ALL, member, ())
        await self._store.write_hash(ACTIVE, member, ())

    async def everyone(self, limit: int) -> list[BatchRecord]:
        """The latest ``limit`` batches of every user, newest first."""
        (stored,) = await self._store.read_hashes([ALL])
        newest = sorted(stored.items(), key=lambda item: item[1], reverse=True)
        found: list[BatchRecord] = []
        gone: list[str] = []
        for member, _ in newest:
            if len(found) >= limit:
                break
            batch_id, _, owner = member.partition("\t")
            record = await self.batch(owner, batch_id)
            if record is None:
                gone.append(member)
            else:
                found.append(record)
        if gone:
            await self._store.write_hash(ALL, {}, tuple(gone))
        return found

    async def deactivate(self, record: BatchRecord) -> None:
        await self._store.write_hash(ACTIVE, {}, (f"{record.id}\t{record.owner}",))

    async def active(self) -> list[tuple[str, str]]:
        """(batch id, owner) of every batch not yet final, oldest first."""
        (stored,) = await self._store.read_hashes([ACTIVE])
        ordered = sorted(stored.items(), key=lambda item: item[1])
        return [(field.partition("\t")[0], field.partition("\t")[2]) for field, _ in ordered]
