"""The usage lines of a month's statements from the ledger (PostgreSQL), any month kept.

A record's charge is its ``charged_usd`` as written by the settle; a record written before that
field existed is charged its cost unless it was BYOK or failed. Every user's statements are
paged by user id: the page's users are found first, then only their lines are summed.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gateway.usage.statements import UsageLine

if TYPE_CHECKING:  # asyncpg (the postgres extra) is imported only when the ledger is built
    from gateway.ledger.db import Database

LINES = (
    "SELECT user_id, tier, capability, model, org, team,"
    " count(*) FILTER (WHERE NOT byok) AS requests,"
    " coalesce(sum(total_tokens) FILTER (WHERE NOT byok), 0) AS tokens,"
    " coalesce(sum(coalesce((record->>'charged_usd')::numeric,"
    "   CASE WHEN byok OR status >= 400 THEN 0 ELSE cost_usd END)), 0) AS charged,"
    " coalesce(sum(cost_usd), 0) AS list_cost,"
    " count(*) FILTER (WHERE byok) AS byok_requests,"
    " coalesce(sum(total_tokens) FILTER (WHERE byok), 0) AS byok_tokens"
    " FROM usage_records WHERE day >= $1 AND day < $2 AND user_id = ANY($3::text[])"
    " GROUP BY user_id, tier, capability, model, org, team"
)
USERS = (
    "SELECT DISTINCT user_id FROM usage_records WHERE day >= $1 AND day < $2 AND user_id > $3"
    " ORDER BY user_id LIMIT $4"
)


def _days(start: float, end: float) -> tuple[dt.date, dt.date]:
    return (
        dt.datetime.fromtimestamp(start, dt.UTC).date(),
        dt.datetime.fromtimestamp(end, dt.UTC).date(),
    )


async def ledger_users(db: Database, start: float, end: float, after: str, limit: int) -> list[str]:
    """Users with records in ``[start, end)`` (whole days), by id, after ``after``."""
    first, last = _days(start, end)
    rows = await db.fetch(USERS, first, last, after, limit)
    return [str(row["user_id"]) for row in rows]


async def ledger_lines(db: Database, start: float, end: float, users: list[str]) -> list[UsageLine]:
    """The lines of ``users`` in ``[start, end)`` (whole UTC days)."""
    if not users:
        return []
    first, last = _days(start, end)
    return [_line(row) for row in await db.fetch(LINES, first, last, users)]


def _line(row: Any) -> UsageLine:
    return UsageLine(
        user=str(row["user_id"]),
        tier=str(row["tier"]),
        capability=str(row["capability"]),
        model=str(row["model"]),
        requests=int(row["requests"]),
        tokens=int(row["tokens"]),
        charged_usd=Decimal(row["charged"]),
        list_cost_usd=Decimal(row["list_cost"]),
        byok_requests=int(row["byok_requests"]),
        byok_tokens=int(row["byok_tokens"]),
        org=str(row["org"]),
        team=str(row["team"]),
    )
