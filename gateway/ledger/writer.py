"""One batch of rows into ``usage_records`` and the daily rollups, in one statement.

The rows go in by ``unnest`` of one array per column with ``ON CONFLICT DO NOTHING``; the
rollups add only the rows that statement actually inserted (``RETURNING``), so shipping a
batch twice stores and counts it once. Rollup rows are upserted in key order, which keeps two
shippers from deadlocking on them (and a deadlock, should one happen, is retried by the caller).
"""

from __future__ import annotations

from typing import Any

from gateway.ledger.rows import TAG_SEPARATOR, Row, columns

TYPES = (
    "date", "timestamptz", "text", "text", "text", "text", "text", "text", "text", "text", "text",
    "text", "text", "integer", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint",
    "numeric", "real", "integer", "boolean", "boolean", "boolean", "text", "text",
)  # fmt: skip
NAMES = Row._fields
DIMENSIONS = "day, user_id, key_id, tier, model, provider, capability, org, team"
COARSE = "day, tier, model, provider, capability"
HOURLY_REST = "tier, model, provider, capability"
HOURLY = f"hour, {HOURLY_REST}"
SUMS = (
    "count(*), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd),"
    " count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE fallback),"
    " sum(latency_ms)"
)
MEASURES = (
    "requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks,"
    " latency_ms_sum"
)
ADD = ", ".join(
    f"{m} = {{table}}.{m} + EXCLUDED.{m}" for m in (part.strip() for part in MEASURES.split(","))
)


def _insert_sql() -> str:
    unnested = ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(TYPES))
    selected = ", ".join(
        "string_to_array(tags, E'\\x1f')"
        if name == "tags"
        else "record::jsonb"
        if name == "record"
        else name
        for name in NAMES
    )
    assert TAG_SEPARATOR == "\x1f"
    return f"""
WITH given ({", ".join(NAMES)}) AS (SELECT * FROM unnest({unnested})),
ins AS (
    INSERT INTO usage_records ({", ".join(NAMES)})
    SELECT {selected} FROM given
    ON CONFLICT DO NOTHING
    RETURNING {DIMENSIONS}, ts, tags, status, fallback, prompt_tokens, completion_tokens,
              total_tokens, cost_usd, latency_ms
),
daily AS (
    INSERT INTO usage_daily ({DIMENSIONS}, {MEASURES})
    SELECT {DIMENSIONS}, {SUMS} FROM ins GROUP BY {DIMENSIONS} ORDER BY {DIMENSIONS}
    ON CONFLICT ({DIMENSIONS}) DO UPDATE SET {ADD.format(table="usage_daily")}
),
tagged AS (
    INSERT INTO usage_daily_tags (tag, {DIMENSIONS}, {MEASURES})
    SELECT tag, {DIMENSIONS}, {SUMS} FROM ins, unnest(ins.tags) AS tag
    GROUP BY tag, {DIMENSIONS} ORDER BY tag, {DIMENSIONS}
    ON CONFLICT (tag, {DIMENSIONS}) DO UPDATE SET {ADD.format(table="usage_daily_tags")}
),
coarse AS (
    INSERT INTO usage_daily_models ({COARSE}, {MEASURES})
    SELECT {COARSE}, {SUMS} FROM ins GROUP BY {COARSE} ORDER BY {COARSE}
    ON CONFLICT ({COARSE}) DO UPDATE SET {ADD.format(table="usage_daily_models")}
),
hourly AS (
    INSERT INTO usage_hourly_models ({HOURLY}, {MEASURES})
    SELECT date_trunc('hour', ts, 'UTC') AS hour, {HOURLY_REST}, {SUMS} FROM ins
    GROUP BY 1, {HOURLY_REST} ORDER BY 1, {HOURLY_REST}
    ON CONFLICT ({HOURLY}) DO UPDATE SET {ADD.format(table="usage_hourly_models")}
)
SELECT count(*) FROM ins
"""


INSERT_SQL = _insert_sql()


async def insert(conn: Any, rows: list[Row]) -> int:
    """Insert ``rows`` (their partitions must exist); how many were new."""
    if not rows:
        return 0
    return int(await conn.fetchval(INSERT_SQL, *columns(rows)))
