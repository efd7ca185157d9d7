"""Usage records as CSV or JSON, and the ``from``/``to`` parameters of a usage query.

Time bounds accept epoch seconds (``1795305600`` or ``1795305600.5``), an ISO date
(``2026-11-22``) or an ISO datetime (``2026-11-22T10:00:00Z``, ``+02:00`` offsets; no offset
means UTC). The range is ``[from, to)``; a date as ``to`` includes that whole day.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson

from gateway.config.model import Config
from gateway.metering.record import UsageRecord
from gateway.metering.windows import windows_at
from gateway.store.factory import create_store
from gateway.usage.history import read_records
from gateway.usage.spreadsheet import records_workbook, wire

MAX_EPOCH_S = 253_402_300_799.0  # 9999-12-31T23:59:59Z
COLUMNS = (
    "time",
    "ts",
    "request_id",
    "user",
    "key_id",
    "tier",
    "capability",
    "model",
    "provider",
    "upstream_model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "images",
    "audio_ms",
    "cost_usd",
    "fallback",
    "byok",
    "status",
    "latency_ms",
    "attempts",
    "estimated",
    "usage_flagged",
    "video_ms",  # last: added after the others, so existing column positions hold
    "cache",
    "tags",  # comma-separated
    "record_id",  # the gateway's id of the record (the ledger's key)
    "list_cost_usd",  # what the request costs at list price (BYOK included)
    "charged_usd",  # what the user was charged (0 for BYOK and failed requests)
    "org",  # the key's organization and team (docs/organizations.md), empty for none
    "team",
)
GROUP_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")
GROUP_COLUMNS = ("tag", "requests", "errors", *GROUP_FIELDS, "cost_usd")
FORMULA_STARTS = frozenset("=+-@\t\r")


def to_csv(records: Iterable[UsageRecord | Mapping[str, Any]]) -> str:
    """A header row, then one row per record; booleans as ``true``/``false``, None empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for record in records:
        row = wire(record)
        _write_row(writer, out, [_cell(row.get(column)) for column in COLUMNS])
    return out.getvalue()


def _write_row(writer: Any, out: io.StringIO, cells: list[str]) -> None:
    """One row; a cell holding a carriage return is quoted too (Python 3.11's writer leaves it
    bare when the line ends in ``\n``, and a spreadsheet then starts a row inside the cell)."""
    if any("\r" in cell for cell in cells):
        out.write(",".join(_quoted(cell) for cell in cells) + "\n")
    else:
        writer.writerow(cells)


def _quoted(cell: str) -> str:
    if any(c in cell for c in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def with_tag(records: Iterable[UsageRecord], tag: str) -> list[UsageRecord]:
    """The records carrying ``tag`` (``x-gateway-tags`` / ``metadata.tags``)."""
    return [record for record in records if tag in record.tags]


def by_tag(records: Iterable[UsageRecord]) -> list[dict[str, Any]]:
    """Per tag: requests, tokens, cost and errors (a record with two tags counts in both;
    records without tags under ``tag: null``)."""
    groups: dict[str | None, dict[str, Any]] = {}
    for record in records:
        tags: tuple[str | None, ...] = record.tags or (None,)
        for tag in tags:
            row = groups.setdefault(tag, {"tag": tag, "requests": 0, "errors": 0, "cost_usd": 0.0})
            row["requests"] += 1
            row["errors"] += int(record.status >= 400)
            row["cost_usd"] = round(row["cost_usd"] + record.cost_usd, 9)
            counts = (record.prompt_tokens, record.completion_tokens, record.total_tokens)
            for name, value in zip(GROUP_FIELDS, counts, strict=True):
                row[name] = row.get(name, 0) + value
    return sorted(groups.values(), key=lambda row: (row["tag"] is None, row["tag"] or ""))


def to_json(records: Iterable[UsageRecord | Mapping[str, Any]]) -> bytes:
    """A JSON array of the records' wire form."""
    return orjson.dumps([wire(record) for record in records])


def parse_time(value: str, *, end: bool = False) -> float:
    """Epoch seconds from a bound; ``end=True`` turns a bare date into the next midnight.
    ``ValueError`` for text that is no time and for a time outside 1970 .. 9999 (NaN,
    infinity and 1e300 made 500s, or walks over the rollups that never ended)."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = _iso_seconds(value, text, end)
    if not 0 <= seconds <= MAX_EPOCH_S:  # false for NaN too
        raise ValueError(f"invalid time {value!r}: expected a time from 1970 to 9999")
    return seconds


def _iso_seconds(value: str, text: str, end: bool) -> float:
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return (moment + timedelta(days=1 if end else 0)).timestamp()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise ValueError(
            f"invalid time {value!r}: expected epoch seconds, YYYY-MM-DD or an ISO datetime"
        ) from None


def parse_range(start: str | None, end: str | None, now: float) -> tuple[float, float]:
    """``(from, to)`` with defaults: from the start of today (UTC) to now."""
    today = windows_at(now).day_reset - 86_400
    low = parse_time(start) if start else float(today)
    high = parse_time(end, end=True) if end else now
    if high < low:
        raise ValueError("'to' is before 'from'")
    return low, high


async def export_records(
    config: Config,
    redis_url: str | None,
    user: str | None,
    start: str,
    end: str,
    fmt: str,
    tag: str | None = None,
    group_by: str | None = None,
    reader: Callable[[str | None, float, float], Awaitable[list[UsageRecord]]] | None = None,
) -> str | bytes:
    """``gateway usage export``: the records of ``[start, end)`` as CSV or JSON text, or an
    XLSX workbook (bytes) (only those tagged ``tag``; per tag when ``group_by`` is ``"tag"``)."""
    low, high = parse_range(start, end, time.time())
    if reader is not None:  # the ledger (gateway/ledger/): any date range
        records = await reader(user, low, high)
    else:
        store = create_store(redis_url, config.settings)
        try:
            records = await read_records(store, user, low, high)
        finally:
            await store.aclose()
    if tag is not None:
        records = with_tag(records, tag)
    if group_by == "tag":
        groups = by_tag(records)
        if fmt == "xlsx":
            return records_workbook(groups, GROUP_COLUMNS)
        return to_json(groups).decode() + "\n" if fmt == "json" else _groups_csv(groups)
    if fmt == "xlsx":
        return records_workbook(records, COLUMNS)
    return to_json(records).decode() + "\n" if fmt == "json" else to_csv(records)


def _groups_csv(groups: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(GROUP_COLUMNS)
    for row in groups:
        _write_row(writer, out, [_cell(row.get(column)) for column in GROUP_COLUMNS])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return neutralised(",".join(str(item) for item in value))
    return neutralised(str(value))


def neutralised(text: str) -> str:
    """Text a spreadsheet will not run as a formula: one starting with ``= + - @``, a tab or a
    carriage return gets a leading ``'`` (OWASP's CSV injection advice)."""
    return "'" + text if text[:1] in FORMULA_STARTS else text
