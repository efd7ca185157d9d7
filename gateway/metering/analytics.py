"""Usage analytics: totals from the precomputed rollups, filtered raw records from the stream.

``totals`` reads only the rollup hashes of ``rollup.py`` (hourly for partial days and for
``bucket="hour"``, daily otherwise; the small ``coarse`` level when the filters and groups allow
it), so its cost follows the number of distinct dimension combinations, not of requests. Ranges
are whole hours: ``start`` is rounded down and ``end`` up to the hour. ``records`` scans the
usage stream newest first (the table page and exports only), at most ``SCAN_LIMIT`` records per
call, and hands back a cursor to continue from.

The rollups are kept current by a ``Roller`` run every ``ROLLUP_INTERVAL_S`` by each process
(only one process folds a given range) and once more before each ``totals`` query, so a query
sees every request finished before it.
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

from gateway.metering.rollup import (
    COARSE,
    DIMENSIONS,
    LATENCY_BASE,
    SEP,
    Roller,
    day_key,
    dimension_values,
    hour_key,
)
from gateway.metering.store import Store

logger = logging.getLogger("gateway.metering")
ROLLUP_INTERVAL_S = 2.0
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

    def dimensions(self) -> dict[str, str]:
        """The dimension filters that are set."""
        return {
            f.name: value
            for f in fields(self)
            if f.name not in ("start", "end") and (value := getattr(self, f.name)) is not None
        }


class Analytics(Protocol):
    source: str  # "redis" (recent records only) | "postgres"

    async def totals(
        self, flt: UsageFilter, group_by: Sequence[str], bucket: str
    ) -> list[dict[str, Any]]: ...

    async def records(
        self, flt: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]: ...


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
    if not value.isdigit():
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
    """``Analytics`` over the metering store (Redis or in-memory)."""

    source = "redis"

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self.roller = Roller(store, clock)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="usage-rollup")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self.roller.run_safely()
            await asyncio.sleep(ROLLUP_INTERVAL_S)

    async def totals(
        self, flt: UsageFilter, group_by: Sequence[str], bucket: str
    ) -> list[dict[str, Any]]:
        unknown = [name for name in group_by if name not in DIMENSIONS]
        if unknown or bucket not in BUCKETS:
            raise ValueError(f"unknown group {unknown} or bucket {bucket!r}")
        await self.roller.run_safely()
        wanted = flt.dimensions()
        level = "coarse" if set(wanted) | set(group_by) <= set(COARSE) else "full"
        names = COARSE if level == "coarse" else DIMENSIONS
        positions = {name: i for i, name in enumerate(names)}
        keys = _keys(level, flt.start, flt.end, bucket)
        hashes = await self._store.read_hashes([key for key, _ in keys])
        groups: dict[tuple[str, ...], dict[str, int]] = {}
        seen: dict[str, tuple[str, ...] | None] = {}
        for (_, label), stored in zip(keys, hashes, strict=True):
            seen.clear()
            for field, value in stored.items():
                prefix, _, metric = field.rpartition(SEP)
                if prefix in seen:
                    group = seen[prefix]
                else:
                    parts = prefix.split(SEP)
                    if len(parts) != len(names):
                        group = None
                    else:
                        dims = dict(zip(names, parts, strict=True))
                        group = (
                            (label, *(parts[positions[g]] for g in group_by))
                            if matches(dims, wanted)
                            else None
                        )
                    seen[prefix] = group
                if group is not None:
                    sums = groups.setdefault(group, {})
                    sums[metric] = sums.get(metric, 0) + value
        return [_row(group, group_by, sums) for group, sums in sorted(groups.items())]

    async def records(
        self, flt: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        found: list[dict[str, Any]] = []
        async for entry, record in self._scan(flt, cursor):
            if record is None:  # the scan limit: continue from ``entry`` next time
                return found, entry
            found.append(record)
            if len(found) >= limit:
                return found, entry
        return found, None

    async def _scan(
        self, flt: UsageFilter, cursor: str | None
    ) -> AsyncIterator[tuple[str, dict[str, Any] | None]]:
        wanted = flt.dimensions()
        scanned = 0
        before = cursor
        while True:
            page = await self._store.records_page(before, 1000)
            for entry, raw in page:
                scanned += 1
                record = orjson.loads(raw)
                stamp = float(record.get("ts") or 0.0)
                if stamp < flt.start - LATE_GRACE_S:
                    return
                if flt.start <= stamp < flt.end and matches(dimension_values(record), wanted):
                    yield entry, record
                if scanned >= SCAN_LIMIT:
                    yield entry, None
                    return
            if len(page) < 1000:
                return
            before = page[-1][0]


def _keys(level: str, start: float, end: float, bucket: str) -> list[tuple[str, str]]:
    """(rollup key, bucket label) covering the hours of ``[start, end)``."""
    first, last = int(start // 3600), int(-(-end // 3600))
    keys: list[tuple[str, str]] = []
    hour = first
    while hour < last:
        moment = datetime.fromtimestamp(hour * 3600, UTC)
        whole_day = hour % 24 == 0 and hour + 24 <= last
        if bucket != "hour" and whole_day:
            day = moment.strftime("%Y%m%d")
            label = moment.strftime("%Y-%m-%d") if bucket == "day" else "all"
            keys.append((day_key(level, day), label))
            hour += 24
            continue
        labels = {
            "hour": moment.strftime("%Y-%m-%dT%H"),
            "day": moment.strftime("%Y-%m-%d"),
            "all": "all",
        }
        keys.append((hour_key(level, moment.strftime("%Y%m%d%H")), labels[bucket]))
        hour += 1
    return keys


def _row(
    group: tuple[str, ...], group_by: Sequence[str], sums: Mapping[str, int]
) -> dict[str, Any]:
    prompt, completion = sums.get("p", 0), sums.get("c", 0)
    row: dict[str, Any] = {"bucket": group[0]}
    row.update(zip(group_by, group[1:], strict=True))
    row.update(
        requests=sums.get("n", 0),
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        cost_usd=round(sums.get("u", 0) / 1_000_000, 6),
        errors=sums.get("e", 0),
        fallbacks=sums.get("f", 0),
        p95_latency_ms=_p95({m: v for m, v in sums.items() if m.startswith("l")}),
    )
    return row


def _p95(histogram: Mapping[str, int]) -> float | None:
    """The upper bound of the latency bucket holding the 95th percentile."""
    total = sum(histogram.values())
    if not total:
        return None
    needed = 0.95 * total
    running = 0
    for bucket in sorted(histogram, key=lambda m: int(m[1:])):
        running += histogram[bucket]
        if running >= needed:
            return round(LATENCY_BASE ** int(bucket[1:]), 1)
    return None
