"""One batch of rows into ``usage_records`` and the daily rollups, in one transaction.

The rows are copied (``COPY … FROM STDIN``, binary) into ``ledger_rows``, a temporary table of
the session's own that empties at each commit, then go from there into ``usage_records`` with
``ON CONFLICT DO NOTHING`` in one statement whose rollups add only the rows it actually
inserted (``RETURNING``), so shipping a batch twice stores and counts it once. COPY takes the
rows as they are: binding one array per column (``unnest``, before) cost the shipper ~1.5x
the CPU to encode (an ABC check per array element), and Postgres about the same. Rollup rows
are upserted in key order, which keeps two shippers from deadlocking on them (and a deadlock,
should one happen, is retried by the caller).
"""

from __future__ import annotations

from typing import Any

from gateway.ledger.rows import TAG_SEPARATOR, Row

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


STAGE = "ledger_rows"
CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE}"
    f" ({', '.join(f'{name} {kind}' for name, kind in zip(NAMES, TYPES, strict=True))})"
    " ON COMMIT DELETE ROWS"
)
QUIET_CREATE = f"SET LOCAL client_min_messages = warning; {CREATE_STAGE}"  # no NOTICE when found
# The sessions (server process ids) known to hold the staging table: made by a session's first
# batch, then assumed (asking each time cost Postgres ~0.5 ms a batch). A session that turns
# out not to have it (a new one under a reused id; a pooler that hands out another session)
# fails its COPY with undefined_table, is forgotten, and the caller's retry makes the table.
_staged: set[int] = set()


def _insert_sql() -> str:
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
WITH ins AS (
    INSERT INTO usage_records ({", ".join(NAMES)})
    SELECT {selected} FROM pg_temp.{STAGE}
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
    """Insert ``rows`` (their partitions must exist); how many were new. In the caller's
    transaction, else in one of its own (the staged rows live until its commit)."""
    if not rows:
        return 0
    if not conn.is_in_transaction():
        async with conn.transaction():
            return await insert(conn, rows)
    session = conn.get_server_pid()
    if session not in _staged:
        await conn.execute(QUIET_CREATE)
    try:
        await conn.copy_records_to_table(STAGE, records=rows, schema_name="pg_temp")
        inserted = int(await conn.fetchval(INSERT_SQL))
    except BaseException:
        _staged.discard(session)
        raise
    _staged.add(session)
    return inserted
