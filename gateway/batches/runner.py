"""Each replica's batch runner: lines from the shared queue through the gateway's pipeline.

It writes each result once and finalizes the batches whose lines are done.

Lines in flight are bounded per replica (``concurrency``), per owner (``user_concurrency``)
and per batch (``batch_concurrency``), so interactive traffic keeps the upstream capacity it
needs. A line
is ``begin``-marked before it is sent: if its replica dies, the line is answered with a
``line_interrupted`` error rather than sent a second time. A line refused by the owner's quota
is queued again and the batch pauses until the quota's ``retry-after``; so is a line whose
owner's key is no longer valid, the batch waiting until the key is valid again (re-checked
every ``key_recheck_s``) or the batch expires. A line queued again is read as soon as the
pause ends, not when its old entry would have gone stale (``claim_idle_ms``). Each tier may
bound its lines in flight too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

import orjson

from gateway.batches.catalog import Catalog
from gateway.batches.finalize import Finalizer
from gateway.batches.jsonl import BatchLine, parse_lines
from gateway.batches.observer import BatchObserver, Unobserved
from gateway.batches.records import BatchRecord, Progress
from gateway.batches.settings import BatchSettings
from gateway.batches.state import DONE, BatchState, Entry
from gateway.batches.storage import FileStorage
from gateway.store.port import StoreError
from gateway.store.redis.errors import FOREIGN_ERRORS

log = logging.getLogger("gateway.batches")
INPUTS_KEPT = 4  # parsed input files held per replica
HEARTBEAT_S = 1.0
PAUSE_DEFAULT_S = 60.0


@dataclass(frozen=True)
class LineOutcome:
    status: int
    body: bytes
    request_id: str
    quota_refused: bool = False
    retry_after_s: float = PAUSE_DEFAULT_S
    key_refused: bool = False  # the owner's key is revoked or expired: the batch waits


Execute = Callable[[BatchRecord, BatchLine], Awaitable[LineOutcome]]
# a batch's tier and that tier's limit of lines in flight (None: no tier limit)
TierOf = Callable[[BatchRecord], tuple[str, int | None]]


class Runner:
    def __init__(
        self,
        settings: BatchSettings,
        catalog: Catalog,
        state: BatchState,
        storage: FileStorage,
        finalizer: Finalizer,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._state = state
        self._storage = storage
        self._finalizer = finalizer
        self._clock = clock
        self.execute: Execute | None = None  # set by the app (the pipeline of its config)
        self.tier_of: TierOf | None = None  # set by the app (the owner's key's tier)
        self.observer: BatchObserver = Unobserved()  # set by the app (the metrics)
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._task: asyncio.Task[None] | None = None
        self._lines: set[asyncio.Task[None]] = set()
        self._running: set[tuple[str, int]] = set()
        self._per_owner: dict[str, int] = {}
        self._per_tier: dict[str, int] = {}
        self._per_batch: dict[str, int] = {}
        self._inputs: dict[str, list[BatchLine]] = {}
        self._beat = 0.0
        self._claimed: dict[str, float] = {}
        self._slot_freed = asyncio.Event()  # a line ended: look for work without waiting

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-runner")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        for running in [*self._lines, *([task] if task else [])]:
            running.cancel()
        for running in [*self._lines, *([task] if task else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                worked = await self.step()
                failures = 0
            except asyncio.CancelledError:
                raise
            except (StoreError, *FOREIGN_ERRORS) as error:  # an outage: lines wait in the store
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning(
                        "batches: the store is unreachable, lines wait (%d in a row): %s",
                        failures,
                        type(error).__name__,
                    )
                worked = False
            except Exception:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.exception("batches: the runner's step failed (%d in a row)", failures)
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), self._settings.poll_s)
                self._slot_freed.clear()

    async def step(self) -> bool:
        """One look at every active batch; True if lines were taken."""
        now = self._clock()
        if now - self._beat >= HEARTBEAT_S:
            await self._state.heartbeat(self.consumer, self._settings.heartbeat_ttl_s)
            self._beat = now
        worked = False
        waiting = paused = 0
        for batch_id, owner in await self._catalog.active():
            record = await self._catalog.batch(owner, batch_id)
            if record is None:
                continue
            progress = await self._state.progress(batch_id)
            if await self._finalizer.maybe_finish(record, progress):
                self._inputs.pop(batch_id, None)
                continue
            if progress.stop is None and now >= record.expires_at:
                progress = replace(progress, stop="expired")  # as the finalizer just flagged it
            if record.status == "in_progress" and not progress.stop:
                waiting += max(0, record.total - progress.started)
                paused += progress.paused_until > now
            entries = await self._take(record, progress, now)
            for entry in entries:
                self._spawn(record, progress, entry)
            worked = worked or bool(entries)
        self.observer.looked(waiting, len(self._lines), paused)
        return worked

    def _tier(self, record: BatchRecord) -> tuple[str, int | None]:
        return ("", None) if self.tier_of is None else self.tier_of(record)

    def _free(self, record: BatchRecord) -> int:
        s = self._settings
        free = min(
            s.concurrency - len(self._lines),
            s.user_concurrency - self._per_owner.get(record.owner, 0),
        )
        if s.batch_concurrency is not None:
            free = min(free, s.batch_concurrency - self._per_batch.get(record.id, 0))
        tier, limit = self._tier(record)
        return free if limit is None else min(free, limit - self._per_tier.get(tier, 0))

    async def _take(self, record: BatchRecord, progress: Progress, now: float) -> list[Entry]:
        free = self._free(record)
        if free <= 0 or record.status not in ("in_progress", "cancelling"):
            return []
        entries: list[Entry] = []
        idle_ms = self._settings.claim_idle_ms
        if now - self._claimed.get(record.id, 0.0) >= idle_ms / 2000:
            self._claimed[record.id] = now
            stale = await self._state.claim_stale(record.id, self.consumer, idle_ms, free)
            entries = [e for e in stale if (record.id, e.line) not in self._running]
        if record.status == "in_progress" and not progress.stop and progress.paused_until <= now:
            wanted = free - len(entries)
            if wanted > 0:
                entries += await self._state.read(record.id, self.consumer, wanted)
        return entries

    def _spawn(self, record: BatchRecord, progress: Progress, entry: Entry) -> None:
        tier = self._tier(record)[0]
        self._running.add((record.id, entry.line))
        self._per_owner[record.owner] = self._per_owner.get(record.owner, 0) + 1
        self._per_tier[tier] = self._per_tier.get(tier, 0) + 1
        self._per_batch[record.id] = self._per_batch.get(record.id, 0) + 1
        task = asyncio.create_task(self._line(record, progress, entry))
        self._lines.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._lines.discard(finished)
            self._running.discard((record.id, entry.line))
            self._per_owner[record.owner] -= 1
            self._per_tier[tier] -= 1
            if self._per_batch[record.id] == 1:
                del self._per_batch[record.id]  # no entry left behind per finished batch
            else:
                self._per_batch[record.id] -= 1
            self._slot_freed.set()

        task.add_done_callback(done)

    async def _line(self, record: BatchRecord, progress: Progress, entry: Entry) -> None:
        try:
            await self._answer(record, progress, entry)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("batches: line %d of %s failed in the runner", entry.line, record.id)

    async def _answer(self, record: BatchRecord, progress: Progress, entry: Entry) -> None:
        state, batch_id = self._state, record.id
        holder = await state.begin(batch_id, entry.line, self.consumer)
        if holder == DONE:
            await state.ack(batch_id, [entry.id])
            return
        lines = await self._input(record)
        line = lines[entry.line]
        if holder != self.consumer:
            if await state.alive(holder):
                return  # still running elsewhere: this entry is looked at again when stale
            error = {"code": "line_interrupted", "message": INTERRUPTED}
            if await state.finish(batch_id, entry.line, _result(record, line, None, error), False):
                self.observer.line_answered(record.endpoint, "interrupted")
            await state.ack(batch_id, [entry.id])
            return
        if progress.stop or progress.paused_until > self._clock() or self.execute is None:
            await state.release(batch_id, entry.line)
            if progress.stop:
                await state.ack(batch_id, [entry.id])  # a stopped batch never runs this line
            else:
                await state.requeue(batch_id, entry)
            return
        outcome = await self.execute(record, line)
        if outcome.quota_refused or outcome.key_refused:
            await state.release(batch_id, entry.line)
            await self._pause(record, outcome)
            await state.requeue(batch_id, entry)  # read again when the pause ends
            return
        response = {
            "status_code": outcome.status,
            "request_id": outcome.request_id,
            "body": _json_or_text(outcome.body),
        }
        ok = 200 <= outcome.status < 300
        if await state.finish(batch_id, entry.line, _result(record, line, response, None), ok):
            self.observer.line_answered(record.endpoint, "completed" if ok else "failed")
        await state.ack(batch_id, [entry.id])

    async def _pause(self, record: BatchRecord, outcome: LineOutcome) -> None:
        """No new line of the batch starts for a while: the owner's quota said when, an
        invalid owner's key is looked at again after ``key_recheck_s``."""
        message = _error_message(outcome.body)
        if outcome.key_refused:
            until = self._clock() + self._settings.key_recheck_s
            reason = f"owner's key: {message or 'no longer valid'}"
        else:
            until = self._clock() + max(1.0, outcome.retry_after_s)
            reason = f"quota: {message}" if message else "quota exceeded"
        await self._state.set_flags(
            record.id, {"paused_until": f"{until:.3f}", "pause_reason": reason[:500]}
        )

    async def _input(self, record: BatchRecord) -> list[BatchLine]:
        lines = self._inputs.get(record.id)
        if lines is None:
            lines = parse_lines(await self._storage.read(record.input_file_id))
            while len(self._inputs) >= INPUTS_KEPT:
                self._inputs.pop(next(iter(self._inputs)))
            self._inputs[record.id] = lines
        return lines


INTERRUPTED = (
    "The replica running this request stopped before its answer was recorded; it was not "
    "sent again, so that no request runs twice."
)


def _result(
    record: BatchRecord, line: BatchLine, response: dict[str, object] | None, error: object
) -> bytes:
    """``o``/``e`` (for the output or error file) and the line of OpenAI's JSONL shape."""
    kind = b"o" if response is not None and 200 <= int(str(response["status_code"])) < 300 else b"e"
    item = {
        "id": f"batch_req_{record.id.removeprefix('batch_')}_{line.number}",
        "custom_id": line.custom_id,
        "response": response,
        "error": error,
    }
    return kind + orjson.dumps(item)


def _json_or_text(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")


def _error_message(body: bytes) -> str:
    parsed = _json_or_text(body)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        return str(parsed["error"].get("message") or "")
    return ""
