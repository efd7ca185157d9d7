"""A batch's end: the output and error files and the final record, written by one replica.

A batch ends once its lines are answered, or once it was stopped and nothing is in flight.

The replica that wins the store's ``set_once`` mark finalizes; the files' ids come from the
batch's id, so a finalization cut short and run again later rewrites the same files.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from gateway.batches.catalog import Catalog
from gateway.batches.files import Files
from gateway.batches.jsonl import parse_lines
from gateway.batches.observer import BatchObserver, Unobserved
from gateway.batches.records import BatchRecord, LineError, Progress
from gateway.batches.state import BatchState
from gateway.store.port import Store

FINALIZE_LEASE_S = 300  # another replica may finalize after this (a finalizer that died)
VALIDATING_TIMEOUT_S = 600  # a batch still validating this long lost its creator


class Finalizer:
    def __init__(
        self,
        catalog: Catalog,
        state: BatchState,
        files: Files,
        store: Store,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._catalog = catalog
        self._state = state
        self._files = files
        self._store = store
        self._clock = clock
        self.observer: BatchObserver = Unobserved()

    async def maybe_finish(self, record: BatchRecord, progress: Progress) -> bool:
        """Finalize ``record`` if its time has come; True when it is final (or being made so)."""
        now = self._clock()
        if record.status in ("completed", "failed", "expired", "cancelled"):
            await self._catalog.deactivate(record)
            return True
        if record.status == "validating":  # its creator died before queueing every line
            if now - record.created_at >= VALIDATING_TIMEOUT_S:
                await self._fail_stuck(record)
                return True
            return False
        stop = progress.stop
        if stop is None and record.status == "in_progress" and now >= record.expires_at:
            await self._state.set_flags(record.id, {"stop": "expired"})
            stop = "expired"
        if stop is not None and progress.started <= progress.done:
            await self._finalize(record, progress, stop)
            return True
        if stop is None and progress.done >= record.total:
            await self._finalize(record, progress, "completed")
            return True
        return False

    async def _finalize(self, record: BatchRecord, progress: Progress, end: str) -> None:
        mark = f"gw:{{b:{record.id}}}:finalizing"
        if not await self._store.set_once(mark, FINALIZE_LEASE_S):
            return
        now = int(self._clock())
        if record.status != "finalizing":
            record = record.moved("finalizing", now)
            await self._catalog.put_batch(record)
        results = await self._state.results(record.id)
        output = [results[n][1:] for n in sorted(results) if results[n][:1] == b"o"]
        errors = [results[n][1:] for n in sorted(results) if results[n][:1] != b"o"]
        if end == "expired":
            expired = await self._expired_lines(record, set(results))
            for _ in expired:
                self.observer.line_answered(record.endpoint, "expired")
            errors += expired
        stem = record.id.removeprefix("batch_")
        output_id = error_id = None
        if output:
            output_id = f"file-{stem}-output"
            data = b"\n".join(output) + b"\n"
            await self._files.store_output(
                record.owner, output_id, data, f"{record.id}_output.jsonl"
            )
        if errors:
            error_id = f"file-{stem}-errors"
            data = b"\n".join(errors) + b"\n"
            await self._files.store_output(record.owner, error_id, data, f"{record.id}_error.jsonl")
        counts = (record.total, len(output), len(errors))
        final = record.moved(
            end, int(self._clock()), output_file_id=output_id, error_file_id=error_id,
            final_counts=counts,
        )  # fmt: skip
        await self._catalog.put_batch(final)
        await self._catalog.deactivate(final)
        await self._state.forget(record.id)
        self.observer.batch_ended(record.endpoint, end)

    async def _fail_stuck(self, record: BatchRecord) -> None:
        error = LineError(
            "batch_creation_interrupted",
            "The gateway replica creating this batch stopped before it was queued; no request "
            "ran. Create the batch again.",
        )
        failed = record.moved("failed", int(self._clock()), errors=(error,), final_counts=(0, 0, 0))
        await self._catalog.put_batch(failed)
        await self._catalog.deactivate(failed)
        await self._state.forget(record.id)
        self.observer.batch_ended(record.endpoint, "failed")

    async def _expired_lines(self, record: BatchRecord, answered: set[int]) -> list[bytes]:
        """OpenAI's error line for each request the window closed on."""
        lines = parse_lines(await self._files.storage.read(record.input_file_id))
        stem = record.id.removeprefix("batch_")
        return [
            orjson.dumps(
                {
                    "id": f"batch_req_{stem}_{line.number}",
                    "custom_id": line.custom_id,
                    "response": None,
                    "error": {
                        "code": "batch_expired",
                        "message": "This request could not be executed before the "
                        "completion window expired.",
                    },
                }
            )
            for index, line in enumerate(lines)
            if index not in answered
        ]
