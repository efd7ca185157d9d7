"""Usage analytics: the port both backends serve, and its Redis backend over the rollups.

``Analytics`` is the port (the dashboard, ``/admin/analytics`` and the exports use only it);
``RedisAnalytics`` serves it from the metering store, ``postgres_analytics.PostgresAnalytics``
from the ledger. The Redis backend: totals from the precomputed rollups, filtered raw records
from the stream.

``totals`` reads only the rollup documents of ``rollup.py`` (hourly for partial days and for
``bucket="hour"``, daily otherwise; the smallest level that has the dimensions filtered and
grouped by), so its cost follows the number of distinct combinations, not of requests. Ranges
are whole hours: ``start`` is rounded down and ``end`` up to the hour. ``records`` scans the
usage stream newest first (the table page and exports only), at most ``SCAN_LIMIT`` records per
call, and hands back a cursor to continue from.

The rollups are kept current by a ``Roller`` run every ``ROLLUP_INTERVAL_S`` by each process
(only one process folds a given range) and once more before each ``totals`` query (waiting up
to ``REFRESH_WAIT_S`` for a run another process holds), so a query sees the requests finished
before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from gateway.metering.record import UsageRecord
from gateway.metering.record_codec import decode
from gateway.store.port import Store
from gateway.usage.roll_groups import DIMENSIONS, HIST, LATENCY_BASE, NONE, C, E, Entry, F, N, P, U
from gateway.usage.rollup import (
    BUSY,
    LEVELS,
    PER_USER,
    SEP,
    Roller,
    day_key,
    dimension_values,
    hour_key,
    load_document,
    padded,
    read_documents,
)

logger = logging.getLogger("gateway.metering")
ROLLUP_INTERVAL_S = 2.0
REFRESH_WAIT_S = 2.0
STOP_WAIT_S = 10.0  # at shutdown, how long a run already under way may take to finish
SCAN_LIMIT = 50_000
LATE_GRACE_S = 86_400
BUCKETS = ("hour", "day", "all")
METRICS = ("n", "e", "f", "p", "c", "u")


@dataclass(frozen=True)
class UsageFilter:
    start: float  # epoch seconds, [start, end)
    end: float
    user: str | None = None
    key_id: str | None = None
    tier: str | None = None
    model: str | None = None
    capability: str | None = None
    status: str | None = None  # "ok" (< 400), "error" (>= 400), "4xx", or a code ("429")
    tag: str | None = None
    provider: str | None = None
    org: str | None = None  # "-": in no organization (a key in no team)
    team: str | None = None

    def dimensions(self) -> dict[str, str]:
        """The dimension filters that are set."""
        return {
            f.name: value
            for f in fields(self)
            if f.name not in ("start", "end") and (value := getattr(self, f.name)) is not None
        }


class Analytics(Protocol):
    """The port: usage totals and filtered records, whichever store holds them."""

    source: str  # "redis" (recent records only) | "postgres"

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def totals(
        self, flt: UsageFilter, group_by: Sequence[str], bucket: str
    ) -> list[dict[str, Any]]:
        """Rows of requests, tokens, cost, errors, fallbacks and p95 latency per ``bucket``
        (``BUCKETS``) and value of each ``group_by`` dimension (``DIMENSIONS``); ValueError
        for another bucket or dimension."""
        ...

    async def records(
        self, flt: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[UsageRecord], str | None]:
        """Up to ``limit`` matching records, newest first, and the cursor to continue from
        (None: no more)."""
        ...


def matches(dims: Mapping[str, str], flt: Mapping[str, str]) -> bool:
    """Whether a record's dimension values pass the dimension filters."""
    for name, wanted in flt.items():
        value = dims[name]
        if name == "tag":
            if wanted not in value.split(","):
                return False
        elif name == "status":
            if not _status_matches(value, wanted):
                return False
        elif value != wanted:
            return False
    return True


def _status_matches(value: str, wanted: str) -> bool:
    if not value.isdecimal():
        return False
    code = int(value)
    if wanted == "ok":
        return code < 400
    if wanted == "error":
        return code >= 400
    if len(wanted) == 3 and wanted.endswith("xx"):
        return value[0] == wanted[0]
    return value == wanted


class RedisAnalytics:
    """``Analytics`` over the metering store (Redis or in-memory): the rollups and the stream."""

    source = "redis"

    def __init__(
        self, store: Store, clock: Callable[[], float] = time.time, *, background: bool = True
    ) -> None:
        self._store = store
        self._clock = clock
        self.roller = Roller(store, clock)
        # False: another process folds (``gateway usage roll``); queries still fold first
        self._background = background
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one run at a time in this process
        self._runs: set[asyncio.Future[int]] = set()

    async def start(self) -> None:
        if self._background:
            self._task = asyncio.create_task(self._loop(), name="usage-rollup")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._runs:
            await asyncio.wait(self._runs, timeout=STOP_WAIT_S)

    async def _loop(self) -> None:
        while True:
            async with self._lock:
                await self._run()
            await asyncio.sleep(ROLLUP_INTERVAL_S)

    async def _run(self) -> int:
        """One run, shielded from its caller's cancellation: a run cut between writing the
        documents and moving the cursor would leave that range to be folded again (counted
        twice), so a query whose client left, or a stopping process, lets it finish."""
        run = asyncio.ensure_future(self.roller.run_safely())
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        return await asyncio.shield(run)

    async def roll_forever(self) -> None:
        """The background folding alone, until cancelled (``gateway usage roll``)."""
        await self._loop()

    async def refresh(self) -> None:
        """Fold what is new before a query; while another run holds the claim, wait for it
        (up to ``REFRESH_WAIT_S``) so that the query sees every request finished before it."""
        deadline = self._clock() + REFRESH_WAIT_S
        async with self._lock:
            while await self._run() == BUSY and self._clock() < deadline:
                await asyncio.sleep(0.02)

    async def totals(
        self, flt: UsageFilter, group_by: Sequence[str], bucket: str
    ) -> list[dict[str, Any]]:
        unknown = [name for name in group_by if name not in DIMENSIONS]
        if unknown or bucket not in BUCKETS:
            raise ValueError(f"unknown group {unknown} or bucket {bucket!r}")
        await self.refresh()
        wanted = flt.dimensions()
        level, _ = choose_level(wanted, group_by)
        keys = _keys(level, flt.start, flt.end, bucket, flt.user or "")
        stored = await read_documents(self._store, [key for key, *_ in keys])
        groups: dict[tuple[str, ...], Entry] = {}
        used = {kept for _, _, kept in keys}
        readers = {name: _Reader(name, wanted, group_by, flt.user or "") for name in used}
        for (_, label, kept), raw in zip(keys, stored, strict=True):
            reader = readers[kept]
            for combo, entry in load_document(raw).items():
                tail = reader.group(combo)
                if tail is not None:
                    merge_entry(groups, (label, *tail), entry)
        return [_row(group, group_by, sums) for group, sums in sorted(groups.items())]

    async def records(
        self, flt: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[UsageRecord], str | None]:
        found: list[UsageRecord] = []
        async for entry, record in self._scan(flt, cursor):
            if record is None:  # the scan limit: continue from ``entry`` next time
                return found, entry
            found.append(record)
            if len(found) >= limit:
                return found, entry
        return found, None

    async def _scan(
        self, flt: UsageFilter, cursor: str | None
    ) -> AsyncIterator[tuple[str, UsageRecord | None]]:
        wanted = flt.dimensions()
        # a record matching an exact filter holds its JSON-encoded value: skip the others unread
        needles = [
            orjson.dumps(v) for k, v in wanted.items() if k not in ("status", "tag") and v != NONE
        ]
        scanned = 0
        before = cursor
        while True:
            page = await self._store.records_page(before, 1000)
            for entry, raw in page:
                scanned += 1
                if scanned >= SCAN_LIMIT:
                    yield entry, None
                    return
                if not all(needle in raw for needle in needles):
                    continue
                record = decode(raw)
                if record is None:
                    continue
                stamp = record.ts
                if stamp < flt.start - LATE_GRACE_S:
                    return
                if flt.start <= stamp < flt.end and matches(dimension_values(record), wanted):
                    yield entry, record
            if len(page) < 1000:
                return
            before = page[-1][0]


def choose_level(wanted: Mapping[str, str], group_by: Sequence[str]) -> tuple[str, tuple[str, ...]]:
    """The smallest rollup level holding every dimension filtered or grouped by."""
    needed = set(wanted) | set(group_by)
    if "user" in wanted and needed - {"user"} <= set(LEVELS[PER_USER]):
        return PER_USER, LEVELS[PER_USER]
    for level in ("coarse", "people", "tags"):
        if needed <= set(LEVELS[level]):
            return level, LEVELS[level]
    return "full", DIMENSIONS


class _Reader:
    """Which group a stored combination of one level falls in (None: filtered out), cached."""

    def __init__(self, level: str, wanted: Mapping[str, str], group_by: Sequence[str], user: str):
        self._level = level
        self._names = LEVELS[level]
        self._suffix = [user] if level == PER_USER else []
        if level == PER_USER:  # the user is in the key: put it back as a value
            self._names = (*self._names, "user")
            wanted = {k: v for k, v in wanted.items() if k != "user"}
        self._wanted = wanted
        self._positions = [self._names.index(g) for g in group_by]
        self._seen: dict[str, tuple[str, ...] | None] = {}

    def group(self, combo: str) -> tuple[str, ...] | None:
        if combo in self._seen:
            return self._seen[combo]
        parts = padded(self._level, combo.split(SEP)) + self._suffix
        tail = None
        if len(parts) == len(self._names) and matches(
            dict(zip(self._names, parts, strict=True)), self._wanted
        ):
            tail = tuple(parts[i] for i in self._positions)
        self._seen[combo] = tail
        return tail


def _keys(
    level: str, start: float, end: float, bucket: str, user: str
) -> list[tuple[str, str, str]]:
    """(document key, bucket label, its level) covering the hours of ``[start, end)``. The
    per-user level is kept by day only: its hours are read from the full level."""
    first, last = int(start // 3600), int(-(-end // 3600))
    keys: list[tuple[str, str, str]] = []
    hourly = "full" if level == PER_USER else level
    hour = first
    while hour < last:
        moment = datetime.fromtimestamp(hour * 3600, UTC)
        whole_day = hour % 24 == 0 and hour + 24 <= last
        if bucket != "hour" and whole_day:
            day = moment.strftime("%Y%m%d")
            label = moment.strftime("%Y-%m-%d") if bucket == "day" else "all"
            keys.append((day_key(level, day, user), label, level))
            hour += 24
            continue
        labels = {
            "hour": moment.strftime("%Y-%m-%dT%H"),
            "day": moment.strftime("%Y-%m-%d"),
            "all": "all",
        }
        keys.append((hour_key(hourly, moment.strftime("%Y%m%d%H")), labels[bucket], hourly))
        hour += 1
    return keys


def merge_entry(groups: dict[tuple[str, ...], Entry], group: tuple[str, ...], entry: Entry) -> None:
    sums = groups.get(group)
    if sums is None:
        groups[group] = [*entry[:HIST], dict(entry[HIST])]
        return
    for i in range(HIST):
        sums[i] += entry[i]
    histogram = sums[HIST]
    for bucket, count in entry[HIST].items():
        histogram[bucket] = histogram.get(bucket, 0) + count


def _row(group: tuple[str, ...], group_by: Sequence[str], sums: Entry) -> dict[str, Any]:
    row: dict[str, Any] = {"bucket": group[0]}
    row.update(zip(group_by, group[1:], strict=True))
    row.update(
        requests=sums[N],
        prompt_tokens=sums[P],
        completion_tokens=sums[C],
        total_tokens=sums[P] + sums[C],
        cost_usd=round(sums[U] / 1_000_000, 6),
        errors=sums[E],
        fallbacks=sums[F],
        p95_latency_ms=_p95(sums[HIST]),
    )
    return row


def _p95(histogram: Mapping[str, int]) -> float | None:
    """The upper bound of the latency bucket holding the 95th percentile."""
    total = sum(histogram.values())
    if not total:
        return None
    needed = 0.95 * total
    running = 0
    for bucket in sorted(histogram, key=int):
        running += histogram[bucket]
        if running >= needed:
            return round(LATENCY_BASE ** int(bucket), 1)
    return None
