"""Usage records read back from the ledger, for ``/v1/usage`` and the export (any date range)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from gateway.ledger.db import Database
from gateway.metering.record import UsageRecord
from gateway.usage.postgres_analytics import bounds

LATE_DAY = dt.timedelta(days=1)  # a record's day is its start's; end bounds by ts too


async def read_records(
    db: Database,
    user: str | None,
    start: float,
    end: float,
    *,
    skip: int = 0,
    limit: int | None = None,
) -> list[UsageRecord]:
    """Records of ``user`` (all users when None) with ``start <= ts < end``, oldest first;
    the first ``skip`` of them left out and at most ``limit`` (a page of ``/v1/usage``)."""
    first, last, low, high = bounds(start, end)
    sql = (
        "SELECT record::text AS record FROM usage_records"
        " WHERE day BETWEEN $1 AND $2 AND ts >= $3 AND ts < $4"
    )
    args: list[Any] = [first, last, low, high]
    if user is not None:
        sql += " AND user_id = $5"
        args.append(user)
    sql += " ORDER BY ts, record_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    if skip:
        sql += f" OFFSET {int(skip)}"
    rows = await db.fetch(sql, *args)
    return [UsageRecord.from_dict(orjson.loads(row["record"])) for row in rows]
