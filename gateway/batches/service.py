"""The Files and Batches APIs' operations for one owner, and the parts behind them."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.batches.catalog import Catalog
from gateway.batches.files import Files
from gateway.batches.finalize import Finalizer
from gateway.batches.jsonl import check_for_batch, parse_lines
from gateway.batches.observer import BatchObserver
from gateway.batches.records import (
    BATCH_ENDPOINTS,
    COMPLETION_WINDOWS,
    RESERVED_METADATA,
    TERMINAL,
    BatchRecord,
    Progress,
)
from gateway.batches.redis_state import RedisBatchState
from gateway.batches.runner import Runner
from gateway.batches.settings import BatchSettings
from gateway.batches.state import BatchState, MemoryBatchState
from gateway.batches.storage import FileStorage, storage_for
from gateway.errors import InvalidRequest, NotFound
from gateway.store.port import Store
from gateway.store.redis.store import RedisStore

MAX_METADATA_KEYS = 16
CheckModel = Callable[[str, dict[str, Any]], None]


class Batches:
    def __init__(
        self,
        settings: BatchSettings,
        store: Store,
        *,
        storage: FileStorage | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self.state: BatchState = (
            RedisBatchState(lambda: store.client) if isinstance(store, RedisStore)
            else MemoryBatchState()
        )  # fmt: skip
        self.catalog = Catalog(store)
        self.files = Files(
            settings, self.catalog, storage or storage_for(settings), self.state, clock
        )
        self._finalizer = Finalizer(self.catalog, self.state, self.files, store, clock)
        self.runner = Runner(
            settings, self.catalog, self.state, self.files.storage, self._finalizer, clock
        )

    def observe(self, observer: BatchObserver) -> None:
        """Report the runner's lines and batches to ``observer`` (the app's metrics)."""
        self.runner.observer = observer
        self._finalizer.observer = observer

    async def start(self) -> None:
        await self.runner.start()

    async def aclose(self) -> None:
        await self.runner.aclose()

    async def create(
        self, owner: str, key_digest: str, fields: Mapping[str, Any], check_model: CheckModel
    ) -> BatchRecord:
        endpoint = fields.get("endpoint")
        if endpoint not in BATCH_ENDPOINTS:
            raise InvalidRequest(
                f"'endpoint' must be one of {', '.join(BATCH_ENDPOINTS)}.", param="endpoint"
            )
        window = fields.get("completion_window")
        if window not in COMPLETION_WINDOWS:
            raise InvalidRequest("'completion_window' must be \"24h\".", param="completion_window")
        metadata = _metadata(fields.get("metadata"))
        file_id = fields.get("input_file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest(
                "'input_file_id' must name an uploaded file.", param="input_file_id"
            )
        source = await self.files.get(owner, file_id)
        if source.purpose != "batch":
            raise InvalidRequest(
                f"File {file_id} was uploaded with purpose '{source.purpose}', not 'batch'.",
                param="input_file_id",
            )
        lines = parse_lines(await self.files.storage.read(file_id))
        check_for_batch(lines, endpoint, check_model)
        now = int(self._clock())
        record = BatchRecord(
            id=f"batch_{secrets.token_hex(12)}", owner=owner, key_digest=key_digest,
            endpoint=endpoint, input_file_id=file_id, completion_window=window, created_at=now,
            expires_at=now + COMPLETION_WINDOWS[window], total=len(lines), metadata=metadata,
        )  # fmt: skip
        await self.catalog.put_batch(record)
        await self.catalog.activate(record)  # a creator dying from here on: see the finalizer
        await self.state.enqueue(record.id, len(lines))
        record = record.moved("in_progress", int(self._clock()))
        await self.catalog.put_batch(record)
        return record

    async def get(self, owner: str, batch_id: str) -> tuple[BatchRecord, Progress]:
        record = await self.catalog.batch(owner, batch_id)
        if record is None:
            raise NotFound(f"No such batch: {batch_id}", param="batch_id", code="batch_not_found")
        if record.final_counts is not None:
            return record, Progress()
        return record, await self.state.progress(batch_id)

    async def list(self, owner: str) -> list[tuple[BatchRecord, Progress]]:
        found = []
        for record in await self.catalog.batches(owner):
            live = record.final_counts is None
            found.append((record, await self.state.progress(record.id) if live else Progress()))
        return found

    async def everyone(self, limit: int) -> Sequence[tuple[BatchRecord, Progress]]:
        """The latest ``limit`` batches of all users and their progress (operators' page)."""
        found = []
        for record in await self.catalog.everyone(limit):
            live = record.final_counts is None
            found.append((record, await self.state.progress(record.id) if live else Progress()))
        return found

    async def cancel(self, owner: str, batch_id: str) -> tuple[BatchRecord, Progress]:
        record, progress = await self.get(owner, batch_id)
        if record.status in TERMINAL or record.status == "cancelling":
            if record.status in ("cancelled", "cancelling"):
                return record, progress
            raise InvalidRequest(
                f"Batch {batch_id} is {record.status} and can no longer be cancelled.",
                code="batch_not_cancellable",
            )
        await self.state.set_flags(batch_id, {"stop": "cancelled"})
        record = record.moved("cancelling", int(self._clock()))
        await self.catalog.put_batch(record)
        return record, progress


def _metadata(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA_KEYS
        or not all(isinstance(k, str) and len(k) <= 64 for k in value)
        or not all(isinstance(v, str) and len(v) <= 512 for v in value.values())
    ):
        raise InvalidRequest(
            f"'metadata' must be an object of at most {MAX_METADATA_KEYS} string values "
            "(keys up to 64 characters, values up to 512).",
            param="metadata",
        )
    if RESERVED_METADATA in value:  # the gateway's own pause notice (``records.public_batch``)
        raise InvalidRequest(
            f"'metadata.{RESERVED_METADATA}' is set by the gateway only.", param="metadata"
        )
    return dict(value)
