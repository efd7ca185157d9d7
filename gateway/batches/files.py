"""Uploaded files: size cap, the owner's storage quota, batch input checked at upload."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import IO

from gateway.batches.catalog import Catalog
from gateway.batches.jsonl import parse_lines
from gateway.batches.records import FILE_PURPOSES, FileRecord
from gateway.batches.settings import MIB, BatchSettings
from gateway.batches.state import BatchState
from gateway.batches.storage import FileStorage
from gateway.errors import InvalidRequest, NotFound, PayloadTooLarge


class Files:
    def __init__(
        self,
        settings: BatchSettings,
        catalog: Catalog,
        storage: FileStorage,
        state: BatchState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._catalog = catalog
        self.storage = storage
        self._state = state
        self._clock = clock

    async def create(
        self, owner: str, source: IO[bytes], filename: str, purpose: str
    ) -> FileRecord:
        if purpose not in FILE_PURPOSES:
            raise InvalidRequest(
                f"'purpose' must be one of {', '.join(sorted(FILE_PURPOSES))}.", param="purpose"
            )
        size = source.seek(0, 2)
        if size > self.settings.max_file_bytes:
            raise self.too_large()
        if purpose == "batch":
            source.seek(0)
            parse_lines(source.read())
        await self._charge(owner, size)
        record = FileRecord(
            id=f"file-{secrets.token_hex(12)}",
            owner=owner,
            size=size,
            created_at=int(self._clock()),
            filename=filename[:255] or "upload",
            purpose=purpose,
        )
        try:
            await self.storage.write(record.id, source)
            await self._catalog.put_file(record)
        except BaseException:
            await self._state.add_stored_bytes(owner, -size)
            raise
        return record

    async def store_output(
        self, owner: str, file_id: str, data: bytes, filename: str
    ) -> FileRecord:
        """A batch's output or error file (counted in the owner's storage, never refused)."""
        record = FileRecord(file_id, owner, len(data), int(self._clock()), filename, "batch_output")
        if await self._catalog.file(owner, file_id) is None:
            await self._state.add_stored_bytes(owner, len(data))
        await self.storage.write_bytes(file_id, data)
        await self._catalog.put_file(record)
        return record

    async def get(self, owner: str, file_id: str) -> FileRecord:
        record = await self._catalog.file(owner, file_id)
        if record is None:
            raise NotFound(
                f"No such File object: {file_id}", param="file_id", code="file_not_found"
            )
        return record

    async def list(self, owner: str) -> list[FileRecord]:
        return await self._catalog.files(owner)

    async def content(self, owner: str, file_id: str) -> bytes:
        return await self.storage.read((await self.get(owner, file_id)).id)

    async def delete(self, owner: str, file_id: str) -> FileRecord:
        record = await self.get(owner, file_id)
        await self._catalog.delete_file(owner, file_id)
        await self.storage.delete(record.id)
        await self._state.add_stored_bytes(owner, -record.size)
        return record

    def too_large(self) -> PayloadTooLarge:
        most = self.settings.max_file_bytes // MIB
        return PayloadTooLarge(f"A file may hold at most {most} MB.", param="file")

    async def _charge(self, owner: str, size: int) -> None:
        total = await self._state.add_stored_bytes(owner, size)
        if total > self.settings.user_quota_bytes:
            await self._state.add_stored_bytes(owner, -size)
            quota = self.settings.user_quota_bytes // MIB
            raise InvalidRequest(
                f"Storing this file would exceed your {quota} MB file storage quota; "
                "delete files you no longer need.",
                code="storage_quota_exceeded",
                param="file",
            )
