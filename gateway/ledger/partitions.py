"""Daily partitions of ``usage_records``: created ahead (and on demand), dropped past retention."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any

PARTITION_LOCK = 7_172_018  # serialises partition DDL between shippers
PARTITION = re.compile(r"^usage_records_(\d{8})$")


def partition_name(day: dt.date) -> str:
    return f"usage_records_{day:%Y%m%d}"


async def ensure(conn: Any, days: Iterable[dt.date]) -> None:
    """Create the partitions of ``days`` that do not exist yet (one transaction, locked)."""
    wanted = sorted(set(days))
    if not wanted:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        have = await existing(conn)
        for day in wanted:
            if day in have:
                continue
            following = day + dt.timedelta(days=1)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF usage_records"
                f" FOR VALUES FROM ('{day.isoformat()}') TO ('{following.isoformat()}')"
            )


async def existing(conn: Any) -> set[dt.date]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'usage_records'::regclass"
    )
    days = set()
    for row in rows:
        match = PARTITION.match(row["relname"])
        if match:
            days.add(dt.datetime.strptime(match.group(1), "%Y%m%d").date())
    return days


async def ensure_ahead(conn: Any, today: dt.date, ahead: int) -> None:
    await ensure(conn, (today + dt.timedelta(days=n) for n in range(-1, ahead + 1)))


async def drop_expired(conn: Any, today: dt.date, retention_days: int) -> list[str]:
    """Drop the partitions wholly older than ``retention_days`` (0: keep all); their names."""
    if retention_days <= 0:
        return []
    cutoff = today - dt.timedelta(days=retention_days)
    dropped = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        for day in sorted(await existing(conn)):
            if day < cutoff:
                await conn.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
                dropped.append(partition_name(day))
    return dropped


def oldest_kept(today: dt.date, retention_days: int) -> dt.date | None:
    """The first day retention keeps (None: every day)."""
    return today - dt.timedelta(days=retention_days) if retention_days > 0 else None
