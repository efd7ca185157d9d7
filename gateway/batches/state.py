"""Per-line progress of the running batches: the port and its in-process form.

The in-process form serves one process without Redis; ``redis_state`` is the shared one.

The lines to run are queue entries (``Entry``: the line's index in the input). A replica
``begin``s a line before sending it, which names it as the line's runner, and ``finish``es it
by writing its result once: both keyed by (batch id, line index), both ids of the gateway's
own, so no line is sent twice and no ``custom_id`` answered twice, whoever delivers an entry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

from gateway.batches.records import Progress


class Entry(NamedTuple):
    id: str  # the queue's id for this delivery
    line: int  # index of the line among the input's requests


DONE = ""  # ``begin``'s answer for a line that already has its result


class BatchState(Protocol):
    async def enqueue(self, batch_id: str, lines: int) -> None:
        """Queue lines ``0..lines-1`` (the batch's consumer group created first)."""
        ...

    async def read(self, batch_id: str, consumer: str, count: int) -> list[Entry]:
        """Up to ``count`` entries never delivered, now pending with ``consumer``."""
        ...

    async def claim_stale(
        self, batch_id: str, consumer: str, idle_ms: int, count: int
    ) -> list[Entry]:
        """Entries pending longer than ``idle_ms`` with any consumer, now ``consumer``'s."""
        ...

    async def ack(self, batch_id: str, ids: list[str]) -> None: ...

    async def begin(self, batch_id: str, line: int, consumer: str) -> str:
        """``consumer`` if it now runs the line, ``DONE`` if the line has a result, else the
        consumer already running it."""
        ...

    async def release(self, batch_id: str, line: int) -> None:
        """Forget a ``begin`` whose line was not sent (it runs again later)."""
        ...

    async def requeue(self, batch_id: str, entry: Entry) -> None:
        """Acknowledge ``entry`` and queue its line again, behind the others: it is read once
        the batch may start lines again (not only when the entry goes stale). Nothing is
        queued when the entry was no longer pending (another consumer took it)."""
        ...

    async def finish(self, batch_id: str, line: int, result: bytes, ok: bool) -> bool:
        """Write the line's result unless it has one; True if this call wrote it."""
        ...

    async def progress(self, batch_id: str) -> Progress: ...

    async def results(self, batch_id: str) -> dict[int, bytes]: ...

    async def set_flags(self, batch_id: str, flags: dict[str, str]) -> None:
        """``stop``, ``paused_until``, ``pause_reason`` (see ``Progress``)."""
        ...

    async def heartbeat(self, consumer: str, ttl_s: int) -> None: ...

    async def alive(self, consumer: str) -> bool: ...

    async def forget(self, batch_id: str) -> None:
        """The batch is final: drop its queue and progress."""
        ...

    async def add_stored_bytes(self, owner: str, delta: int) -> int:
        """Add to the owner's stored file bytes; the new total."""
        ...


def progress_from(counters: dict[str, str]) -> Progress:
    def number(name: str) -> int:
        return int(counters.get(name) or 0)

    return Progress(
        started=number("started"),
        done=number("done"),
        completed=number("completed"),
        failed=number("failed"),
        stop=counters.get("stop") or None,
        paused_until=float(counters.get("paused_until") or 0),
        pause_reason=counters.get("pause_reason", ""),
    )


@dataclass
class _Batch:
    queued: list[int] = field(default_factory=list)
    next: int = 0
    pending: dict[str, tuple[str, float, int]] = field(default_factory=dict)  # id → who, when, line
    running: dict[int, str] = field(default_factory=dict)
    results: dict[int, bytes] = field(default_factory=dict)
    counters: dict[str, str] = field(default_factory=dict)


class MemoryBatchState:
    """The same contract held in this process (the memory store's gateways)."""

    def __init__(self) -> None:
        self._batches: dict[str, _Batch] = {}
        self._alive: dict[str, float] = {}
        self._stored: dict[str, int] = {}

    def _of(self, batch_id: str) -> _Batch:
        return self._batches.setdefault(batch_id, _Batch())

    async def enqueue(self, batch_id: str, lines: int) -> None:
        self._of(batch_id).queued.extend(range(lines))

    async def read(self, batch_id: str, consumer: str, count: int) -> list[Entry]:
        batch = self._of(batch_id)
        entries: list[Entry] = []
        while batch.next < len(batch.queued) and len(entries) < count:
            line = batch.queued[batch.next]
            entry = Entry(str(batch.next), line)
            batch.pending[entry.id] = (consumer, time.monotonic(), line)
            batch.next += 1
            entries.append(entry)
        return entries

    async def claim_stale(
        self, batch_id: str, consumer: str, idle_ms: int, count: int
    ) -> list[Entry]:
        batch, now = self._of(batch_id), time.monotonic()
        stale = [
            (entry_id, line)
            for entry_id, (_, since, line) in batch.pending.items()
            if (now - since) * 1000 >= idle_ms
        ][:count]
        for entry_id, line in stale:
            batch.pending[entry_id] = (consumer, now, line)
        return [Entry(entry_id, line) for entry_id, line in stale]

    async def ack(self, batch_id: str, ids: list[str]) -> None:
        batch = self._of(batch_id)
        for entry_id in ids:
            batch.pending.pop(entry_id, None)

    async def begin(self, batch_id: str, line: int, consumer: str) -> str:
        batch = self._of(batch_id)
        if line in batch.results:
            return DONE
        holder = batch.running.setdefault(line, consumer)
        if holder == consumer:
            _bump(batch.counters, "started", 1)
        return holder

    async def release(self, batch_id: str, line: int) -> None:
        batch = self._of(batch_id)
        if batch.running.pop(line, None) is not None:
            _bump(batch.counters, "started", -1)

    async def requeue(self, batch_id: str, entry: Entry) -> None:
        batch = self._of(batch_id)
        if batch.pending.pop(entry.id, None) is not None:
            batch.queued.append(entry.line)

    async def finish(self, batch_id: str, line: int, result: bytes, ok: bool) -> bool:
        batch = self._of(batch_id)
        if line in batch.results:
            return False
        batch.results[line] = result
        _bump(batch.counters, "done", 1)
        _bump(batch.counters, "completed" if ok else "failed", 1)
        return True

    async def progress(self, batch_id: str) -> Progress:
        return progress_from(self._of(batch_id).counters)

    async def results(self, batch_id: str) -> dict[int, bytes]:
        return dict(self._of(batch_id).results)

    async def set_flags(self, batch_id: str, flags: dict[str, str]) -> None:
        self._of(batch_id).counters.update(flags)

    async def heartbeat(self, consumer: str, ttl_s: int) -> None:
        self._alive[consumer] = time.monotonic() + ttl_s

    async def alive(self, consumer: str) -> bool:
        return self._alive.get(consumer, 0.0) > time.monotonic()

    async def forget(self, batch_id: str) -> None:
        batch = self._batches.pop(batch_id, None)
        if batch is not None:  # keep the counters readable for a final record's late reads
            self._batches[batch_id] = replace(_Batch(), counters=batch.counters)

    async def add_stored_bytes(self, owner: str, delta: int) -> int:
        self._stored[owner] = max(0, self._stored.get(owner, 0) + delta)
        return self._stored[owner]


def _bump(counters: dict[str, str], name: str, delta: int) -> None:
    counters[name] = str(int(counters.get(name) or 0) + delta)
