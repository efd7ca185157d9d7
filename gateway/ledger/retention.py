"""Retention of the rollups: their rows of days older than the rollup retention, deleted."""

from __future__ import annotations

import datetime as dt
from typing import Any

DAILY = ("usage_daily", "usage_daily_tags", "usage_daily_models")  # keyed by `day` first
HOURLY = ("usage_hourly_models",)  # keyed by `hour` first


async def prune_rollups(conn: Any, today: dt.date, days_kept: int) -> dict[str, int]:
    """Delete the rollup rows of days before ``today - days_kept`` (0: keep all); rows
    deleted per table. Each table's key starts with its day (or hour): an index range scan."""
    if days_kept <= 0:
        return {}
    cutoff = today - dt.timedelta(days=days_kept)
    midnight = dt.datetime.combine(cutoff, dt.time(), dt.UTC)
    deleted = {}
    async with conn.transaction():
        for table in DAILY:
            deleted[table] = _count(
                await conn.execute(f"DELETE FROM {table} WHERE day < $1", cutoff)
            )
        for table in HOURLY:
            deleted[table] = _count(
                await conn.execute(f"DELETE FROM {table} WHERE hour < $1", midnight)
            )
    return {table: n for table, n in deleted.items() if n}


def _count(status: str) -> int:
    """``DELETE 12`` → 12."""
    return int(status.rsplit(" ", 1)[-1])
