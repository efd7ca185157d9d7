"""The ``Analytics`` port over the ledger's tables: totals from rollups, records from rows.

The ledger (``gateway/ledger/``, a room above this one) hands in its connection pool as
``Rows``: only ``fetch`` is used, so this module needs no database driver.

When the filters and groups are among tier, model, provider and capability, everything comes
from the coarse rollups: whole days from ``usage_daily_models``, the rest by whole hours (the
range rounded out to the hour, as in the Redis analytics) from ``usage_hourly_models``.
Otherwise whole UTC days come from ``usage_daily_tags`` (a tag filter) or ``usage_daily``, and
the partial days at the edges, hourly buckets, status filters or groups and tag groups from
``usage_records`` (pruned to the days of the range).
The p95 latency is exact where rows are read, and None for rows summed from rollups. A tag
group's value is the record's tags joined by commas (``-`` untagged), as in the Redis analytics;
so is an ``org`` or ``team`` group's for a key in none (stored as ``''``; a filter of ``-``
selects them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

import orjson

from gateway.metering.record import UsageRecord
from gateway.usage.analytics import BUCKETS, UsageFilter
from gateway.usage.roll_groups import DIMENSIONS

COLUMNS = {
    "user": "user_id",
    "status": "status::text",
    "org": "coalesce(nullif(org, ''), '-')",
    "team": "coalesce(nullif(team, ''), '-')",
}
NONE = "-"
COARSE = {"tier", "model", "provider", "capability"}
SUMS = (
    "sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens,"
    " sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd,"
    " sum(errors) AS errors, sum(fallbacks) AS fallbacks, NULL::float8 AS p95"
)
RAW_SUMS = (
    "count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,"
    " sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd,"
    " count(*) FILTER (WHERE status >= 400) AS errors,"
    " count(*) FILTER (WHERE fallback) AS fallbacks,"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95"
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
BUCKET_SQL = {
    "hour": "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')",
    "day": "to_char(day, 'YYYY-MM-DD')",
    "all": "'all'",
}


class Rows(Protocol):
    """The ledger's reads (``ledger.db.Database``)."""

    async def fetch(self, sql: str, *args: Any) -> list[Any]: ...


def bounds(start: float, end: float) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    """The partition days and timestamps of ``[start, end)``."""
    low = dt.datetime.fromtimestamp(max(start, 0.0), dt.UTC)
    high = dt.datetime.fromtimestamp(min(max(end, 0.0), 253_402_300_799.0), dt.UTC)
    return low.date(), high.date(), low, high


class PostgresAnalytics:
    """``Analytics`` over the ledger: its rollup tables and ``usage_records``."""

    source = "postgres"

    def __init__(self, database: Rows) -> None:
        self._db = database

    async def start(self) -> None:  # nothing runs in the background: the shipper rolls up
        return None

    async def aclose(self) -> None:
        return None

    async def totals(
        self, flt: UsageFilter, group_by: Sequence[str], bucket: str
    ) -> list[dict[str, Any]]:
        unknown = [name for name in group_by if name not in DIMENSIONS]
        if unknown or bucket not in BUCKETS:
            raise ValueError(f"unknown group {unknown} or bucket {bucket!r}")
        wanted = set(flt.dimensions()) | set(group_by)
        if wanted <= COARSE:
            return await self._coarse(flt, group_by, bucket)
        first_day, last_day, low, high = bounds(flt.start, flt.end)
        whole_from = first_day if low.time() == dt.time(0) else first_day + dt.timedelta(days=1)
        whole_to = last_day  # exclusive: the day holding `end` is partial (or empty)
        rollups_usable = (
            bucket != "hour" and "status" not in group_by and "tag" not in group_by
        ) and flt.status is None
        parts: list[list[Any]] = []
        if rollups_usable and whole_from < whole_to:
            parts.append(await self._rollups(flt, group_by, bucket, whole_from, whole_to))
            edges = [
                (low, _midnight(whole_from)),
                (_midnight(whole_to), high),
            ]
        else:
            edges = [(low, high)]
        for edge_low, edge_high in edges:
            if edge_low < edge_high:
                parts.append(await self._raw(flt, group_by, bucket, edge_low, edge_high))
        return _merge(parts, group_by)

    async def _coarse(
        self, flt: UsageFilter, group_by: Sequence[str], bucket: str
    ) -> list[dict[str, Any]]:
        """Filters and groups among tier, model, provider, capability: whole days from
        ``usage_daily_models``, the rest by whole hours (the range's ends rounded out to the
        hour, as the Redis analytics do) from ``usage_hourly_models``."""
        _, _, low, high = bounds(flt.start, flt.end)
        first_hour = low.replace(minute=0, second=0, microsecond=0)
        last_hour = high.replace(minute=0, second=0, microsecond=0)
        if last_hour < high:
            last_hour += dt.timedelta(hours=1)
        day_from = first_hour.date() + dt.timedelta(days=0 if first_hour.hour == 0 else 1)
        day_to = last_hour.date()
        parts: list[list[Any]] = []
        spans = [(first_hour, last_hour)]
        if bucket != "hour" and day_from < day_to:
            parts.append(await self._rollups(flt, group_by, bucket, day_from, day_to))
            spans = [(first_hour, _midnight(day_from)), (_midnight(day_to), last_hour)]
        for span_low, span_high in spans:
            if span_low < span_high:
                parts.append(await self._hourly(flt, group_by, bucket, span_low, span_high))
        return _merge(parts, group_by)

    async def _hourly(
        self,
        flt: UsageFilter,
        group_by: Sequence[str],
        bucket: str,
        low: dt.datetime,
        high: dt.datetime,
    ) -> list[Any]:
        where, args = _filters(flt, [low, high], raw=False)
        labels = {
            "hour": "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')",
            "day": "to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
            "all": "'all'",
        }
        selected = ", ".join([f"{labels[bucket]} AS bucket", *group_by, SUMS])
        grouping = ", ".join(["1", *(str(i + 2) for i in range(len(group_by)))])
        return await self._db.fetch(
            f"SELECT {selected} FROM usage_hourly_models WHERE hour >= $1 AND hour < $2{where}"
            f" GROUP BY {grouping}",
            *args,
        )

    async def records(
        self, flt: UsageFilter, limit: int, cursor: str | None
    ) -> tuple[list[UsageRecord], str | None]:
        """Newest first, ``limit`` at a time; the cursor is the last row's (ts, record id)."""
        first_day, last_day, low, high = bounds(flt.start, flt.end)
        where, args = _filters(flt, [first_day, last_day, low, high], raw=True)
        if cursor:  # checked by the caller: ``micros:record_id`` (http/analytics.py)
            stamp, _, record_id = cursor.partition(":")
            args += [EPOCH + dt.timedelta(microseconds=int(stamp)), record_id]
            where += f" AND (ts, record_id) < (${len(args) - 1}, ${len(args)})"
        rows = await self._db.fetch(
            "SELECT record::text AS record, ts, record_id FROM usage_records"
            f" WHERE day BETWEEN $1 AND $2 AND ts >= $3 AND ts < $4{where}"
            f" ORDER BY ts DESC, record_id DESC LIMIT {int(limit) + 1}",
            *args,
        )
        page = rows[: int(limit)]
        found = [UsageRecord.from_dict(orjson.loads(row["record"])) for row in page]
        if len(rows) <= int(limit) or not page:
            return found, None
        last = page[-1]
        return found, f"{_micros(last['ts'])}:{last['record_id']}"

    async def _rollups(
        self,
        flt: UsageFilter,
        group_by: Sequence[str],
        bucket: str,
        first: dt.date,
        until: dt.date,
    ) -> list[Any]:
        wanted = set(flt.dimensions()) | set(group_by)
        if flt.tag is not None:
            table = "usage_daily_tags"
        elif wanted <= COARSE:
            table = "usage_daily_models"  # a few rows per model and day
        else:
            table = "usage_daily"  # by (day, ...) or, for one user, by (user_id, day)
        where, args = _filters(flt, [first, until], raw=False)
        groups = [COLUMNS.get(name, name) for name in group_by]
        label = BUCKET_SQL["day" if bucket == "day" else "all"]
        selected = ", ".join([f"{label} AS bucket", *groups, SUMS])
        grouping = ", ".join(["1", *(str(i + 2) for i in range(len(groups)))])
        return await self._db.fetch(
            f"SELECT {selected} FROM {table} WHERE day >= $1 AND day < $2{where}"
            f" GROUP BY {grouping}",
            *args,
        )

    async def _raw(
        self,
        flt: UsageFilter,
        group_by: Sequence[str],
        bucket: str,
        low: dt.datetime,
        high: dt.datetime,
    ) -> list[Any]:
        where, args = _filters(flt, [low.date(), high.date(), low, high], raw=True)
        groups = [
            "coalesce(nullif(array_to_string(tags, ','), ''), '-')"
            if name == "tag"
            else COLUMNS.get(name, name)
            for name in group_by
        ]
        selected = ", ".join([f"{BUCKET_SQL[bucket]} AS bucket", *groups, RAW_SUMS])
        grouping = ", ".join(["1", *(str(i + 2) for i in range(len(groups)))])
        return await self._db.fetch(
            f"SELECT {selected} FROM usage_records"
            f" WHERE day BETWEEN $1 AND $2 AND ts >= $3 AND ts < $4{where}"
            f" GROUP BY {grouping}",
            *args,
        )


def _filters(flt: UsageFilter, args: list[Any], *, raw: bool) -> tuple[str, list[Any]]:
    """`` AND ...`` for every dimension filter set, and the arguments extended."""
    where = ""
    for name, value in flt.dimensions().items():
        if name == "status":
            clause = _status_clause(value)
            if clause:
                where += f" AND {clause}"
            continue
        if name == "tag":
            args.append(value)
            where += f" AND ${len(args)} = ANY(tags)" if raw else f" AND tag = ${len(args)}"
            continue
        if name in ("org", "team"):
            args.append("" if value == NONE else value)
            where += f" AND {name} = ${len(args)}"
            continue
        args.append(value)
        where += f" AND {COLUMNS.get(name, name)} = ${len(args)}"
    return where, args


def _status_clause(wanted: str) -> str:
    if wanted == "ok":
        return "status < 400"
    if wanted == "error":
        return "status >= 400"
    if len(wanted) == 3 and wanted.endswith("xx") and wanted[0].isdecimal():
        return f"status / 100 = {int(wanted[0])}"
    if wanted.isdecimal():
        return f"status = {int(wanted)}"
    return "false"


def _merge(parts: list[list[Any]], group_by: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of every part summed per (bucket, groups), in key order, shaped as contract D's."""
    merged: dict[tuple[str, ...], dict[str, Any]] = {}
    for rows in parts:
        for row in rows:
            values = list(row.values())
            key = tuple(str(v) for v in values[: 1 + len(group_by)])
            sums = merged.setdefault(key, {"n": 0, "p": 0, "c": 0, "u": Decimal(0), "e": 0})
            sums["n"] += int(row["requests"] or 0)
            sums["p"] += int(row["prompt_tokens"] or 0)
            sums["c"] += int(row["completion_tokens"] or 0)
            sums["u"] += Decimal(row["cost_usd"] or 0)
            sums["e"] += int(row["errors"] or 0)
            sums["f"] = sums.get("f", 0) + int(row["fallbacks"] or 0)
            p95 = row["p95"]
            sums["l"] = None if ("l" in sums or p95 is None) else round(float(p95), 1)
    result = []
    for key, sums in sorted(merged.items()):
        row_out: dict[str, Any] = {"bucket": key[0]}
        row_out.update(zip(group_by, key[1:], strict=True))
        row_out.update(
            requests=sums["n"],
            prompt_tokens=sums["p"],
            completion_tokens=sums["c"],
            total_tokens=sums["p"] + sums["c"],
            cost_usd=round(float(sums["u"]), 6),
            errors=sums["e"],
            fallbacks=sums.get("f", 0),
            p95_latency_ms=sums.get("l"),
        )
        result.append(row_out)
    return result


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def _micros(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(microseconds=1)
