"""GET /v1/admin/analytics, /v1/admin/usage/records and /v1/admin/usage/export (viewer role).

The same query parameters filter all three: ``start``/``end`` (as ``/v1/usage``'s
``from``/``to``: epoch seconds, a date or an ISO datetime; default the last 24 hours),
``user``, ``key_id``, ``tier``, ``model``, ``provider``, ``capability``, ``status`` (``ok``,
``error``, ``4xx``, ``429``...), ``tag``, ``org`` and ``team`` (``-``: a key in none). The
analytics endpoint adds ``group_by`` (comma separated dimensions) and ``bucket`` (``hour``,
``day`` or ``all``); the records endpoint ``limit`` and ``cursor``; the export ``format``
(``csv``, ``json`` or ``xlsx``) and exports exactly the filtered records, oldest first, up to
``EXPORT_MAX``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import InvalidRequest
from gateway.http.admin.auth import require_role
from gateway.http.responses import json_response
from gateway.http.services import services
from gateway.metering.record import UsageRecord
from gateway.usage.analytics import BUCKETS, Analytics, UsageFilter
from gateway.usage.export import COLUMNS, parse_time, to_csv, to_json
from gateway.usage.roll_groups import DIMENSIONS
from gateway.usage.rollup import DAY_TTL_S
from gateway.usage.spreadsheet import records_workbook

EXPORT_MAX = 200_000
# a records page's cursor, as each source hands it out: a usage stream entry id (Redis), or
# the last row's microseconds since the epoch and request id (the ledger)
STREAM_CURSOR = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
LEDGER_CURSOR = re.compile(r"(\d{1,18}):([^\x00-\x1f\x7f]{1,512})")
MAX_STREAM_PART = 2**64 - 1
MAX_LEDGER_MICROS = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FILTERS = (
    "user", "key_id", "tier", "model", "provider", "capability", "status", "tag", "org", "team",
)  # fmt: skip
FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def usage_filter(params: QueryParams | Mapping[str, str], now: float) -> UsageFilter:
    """The filter the query parameters describe; ``InvalidRequest`` for a bad one."""
    start = _time(params, "start", now - 86_400)
    end = _time(params, "end", now)
    if end < start:
        raise InvalidRequest("'end' is before 'start'.", param="end")
    chosen = {name: value for name in FILTERS if (value := params.get(name))}
    for name, value in chosen.items():
        refuse_control_characters(name, value)
    return UsageFilter(start, end, **chosen)


def refuse_control_characters(name: str, value: str) -> None:
    """A 400 for a filter holding a control character (a NUL made Postgres fail: a 503)."""
    if CONTROL.search(value):
        raise InvalidRequest(f"'{name}' must not contain control characters.", param=name)


def _time(params: QueryParams | Mapping[str, str], name: str, default: float) -> float:
    """A time bound from 1970 to the year 9999 (NaN, infinity or 1e300 made a 500, or a
    rollup walk that never ended)."""
    text = params.get(name)
    if not text:
        return default
    try:
        return parse_time(text, end=name == "end")  # refuses times outside 1970 .. 9999
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=name) from None


def rollup_window(flt: UsageFilter, now: float) -> UsageFilter:
    """``flt`` within the rollups' lifetime (``DAY_TTL_S``) and up to a day ahead: a wider
    range reads nothing more, but costs one rollup key per day or hour (``start=0`` with
    ``bucket=hour`` held a worker for minutes)."""
    return replace(
        flt, start=max(flt.start, now - DAY_TTL_S - 86_400), end=min(flt.end, now + 86_400)
    )


def records_cursor(params: QueryParams | Mapping[str, str], source: str) -> str | None:
    """The ``cursor`` of a records page, None for the first page: one that ``source``
    ("redis" or "postgres") could have handed out, in range; anything else is a 400 (out of
    range it was a store error: a reset connection, a 500)."""
    cursor = params.get("cursor") or None
    if cursor is None:
        return None
    if source == "postgres":
        found = LEDGER_CURSOR.fullmatch(cursor)
        valid = found is not None and int(found[1]) <= MAX_LEDGER_MICROS
    else:
        found = STREAM_CURSOR.fullmatch(cursor)
        valid = found is not None and all(
            int(part) <= MAX_STREAM_PART for part in found.groups() if part is not None
        )
    if not valid:
        raise InvalidRequest("'cursor' must be a next_cursor from a previous page.", param="cursor")
    return cursor


def records_limit(params: QueryParams | Mapping[str, str]) -> int:
    limit = params.get("limit") or "50"
    if not limit.isdecimal() or not 1 <= int(limit) <= 1000:
        raise InvalidRequest("'limit' must be a whole number from 1 to 1000.", param="limit")
    return int(limit)


def group_and_bucket(params: QueryParams | Mapping[str, str]) -> tuple[list[str], str]:
    groups = [g for g in (params.get("group_by") or "").split(",") if g]
    unknown = [g for g in groups if g not in DIMENSIONS]
    if unknown:
        raise InvalidRequest(
            f"'group_by' takes dimensions from: {', '.join(DIMENSIONS)}.", param="group_by"
        )
    bucket = params.get("bucket") or "day"
    if bucket not in BUCKETS:
        raise InvalidRequest(f"'bucket' must be one of: {', '.join(BUCKETS)}.", param="bucket")
    return groups, bucket


async def analytics(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    now = gateway.clock()
    flt = usage_filter(request.query_params, now)
    groups, bucket = group_and_bucket(request.query_params)
    flt = rollup_window(flt, now)
    rows = await gateway.analytics.totals(flt, groups, bucket)
    return json_response({"object": "analytics", "source": gateway.analytics.source, "data": rows})


async def records(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    params = request.query_params
    flt = usage_filter(params, gateway.clock())
    limit = records_limit(params)
    cursor = records_cursor(params, gateway.analytics.source)
    found, following = await gateway.analytics.records(flt, limit, cursor)
    data = [record.as_dict() for record in found]
    return json_response({"object": "list", "data": data, "next_cursor": following})


async def export(request: Request) -> Response:
    require_role(request, "viewer")
    gateway = services(request)
    fmt = export_format(request.query_params)
    flt = usage_filter(request.query_params, gateway.clock())
    return await export_response(gateway.analytics, flt, fmt)


def export_format(params: QueryParams | Mapping[str, str]) -> str:
    fmt = params.get("format") or "csv"
    if fmt not in FORMATS:
        raise InvalidRequest("'format' must be 'csv', 'json' or 'xlsx'.", param="format")
    return fmt


async def export_response(
    source: Analytics, flt: UsageFilter, fmt: str, name: str = "usage"
) -> Response:
    """The records ``flt`` selects (up to ``EXPORT_MAX``, oldest first) as a ``fmt`` file."""
    found = await every_record(source, flt, EXPORT_MAX)
    body: bytes
    if fmt == "csv":
        body = to_csv(found).encode()
    elif fmt == "json":
        body = to_json(found)
    else:
        body = to_xlsx(found)
    headers = {"content-disposition": f'attachment; filename="{name}.{fmt}"'}
    return Response(body, media_type=FORMATS[fmt], headers=headers)


async def every_record(source: Analytics, flt: UsageFilter, most: int) -> list[UsageRecord]:
    """The filtered records (up to ``most``), oldest first, page by page."""
    found: list[UsageRecord] = []
    cursor: str | None = None
    while len(found) < most:
        page, cursor = await source.records(flt, min(1000, most - len(found)), cursor)
        found.extend(page)
        if cursor is None:
            break
    found.sort(key=lambda record: record.ts)
    return found


def to_xlsx(found: Iterable[UsageRecord | Mapping[str, Any]]) -> bytes:
    """One sheet: the CSV export's header row and columns, numbers as numbers and every text
    as text (never a formula or a link, whatever it starts with)."""
    return records_workbook(found, COLUMNS)
