-- The usage ledger: one row per request, partitioned by the record's own UTC day.
-- The key includes the day (a partitioned table's unique key must hold the partition column);
-- a record's day never changes, so a record shipped twice meets its first copy in the same
-- partition and ON CONFLICT DO NOTHING stores it once. The key also holds `ts` (the request's
-- start, from the record): two different requests that reuse one client-sent X-Request-Id
-- are both kept, a record shipped twice (identical ts) is not.
CREATE TABLE IF NOT EXISTS usage_records (
    day date NOT NULL,
    ts timestamptz NOT NULL,
    request_id text NOT NULL,
    user_id text NOT NULL,
    key_id text NOT NULL DEFAULT '',
    tier text NOT NULL DEFAULT '',
    capability text NOT NULL DEFAULT '',
    model text NOT NULL DEFAULT '',
    provider text NOT NULL DEFAULT '',
    upstream_model text NOT NULL DEFAULT '',
    status integer NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    total_tokens bigint NOT NULL DEFAULT 0,
    images bigint NOT NULL DEFAULT 0,
    audio_ms bigint NOT NULL DEFAULT 0,
    video_ms bigint NOT NULL DEFAULT 0,
    cost_usd numeric(20, 9) NOT NULL DEFAULT 0,
    latency_ms real NOT NULL DEFAULT 0,
    attempts integer NOT NULL DEFAULT 0,
    fallback boolean NOT NULL DEFAULT false,
    byok boolean NOT NULL DEFAULT false,
    estimated boolean NOT NULL DEFAULT false,
    tags text[] NOT NULL DEFAULT '{}',
    record jsonb NOT NULL,
    PRIMARY KEY (day, request_id, ts)
) PARTITION BY RANGE (day);

-- One user's records over a range: /v1/usage, the export of one user.
CREATE INDEX IF NOT EXISTS usage_records_user_ts ON usage_records (user_id, ts);
-- Every user's records over a range: the export, the analytics' record list.
CREATE INDEX IF NOT EXISTS usage_records_ts ON usage_records (ts);

-- Daily rollups, maintained by the shipper in the transaction that inserts the rows (only rows
-- actually inserted are added, so a batch shipped twice is counted once).
CREATE TABLE IF NOT EXISTS usage_daily (
    day date NOT NULL,
    user_id text NOT NULL,
    key_id text NOT NULL,
    tier text NOT NULL,
    model text NOT NULL,
    provider text NOT NULL,
    capability text NOT NULL,
    requests bigint NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    total_tokens bigint NOT NULL DEFAULT 0,
    cost_usd numeric(24, 9) NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    fallbacks bigint NOT NULL DEFAULT 0,
    latency_ms_sum double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (day, user_id, key_id, tier, model, provider, capability)
);
CREATE INDEX IF NOT EXISTS usage_daily_model_day ON usage_daily (model, day);

-- The same per tag (a record with two tags counts in both; untagged records are not here).
CREATE TABLE IF NOT EXISTS usage_daily_tags (
    day date NOT NULL,
    tag text NOT NULL,
    user_id text NOT NULL,
    key_id text NOT NULL,
    tier text NOT NULL,
    model text NOT NULL,
    provider text NOT NULL,
    capability text NOT NULL,
    requests bigint NOT NULL DEFAULT 0,
    prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    total_tokens bigint NOT NULL DEFAULT 0,
    cost_usd numeric(24, 9) NOT NULL DEFAULT 0,
    errors bigint NOT NULL DEFAULT 0,
    fallbacks bigint NOT NULL DEFAULT 0,
    latency_ms_sum double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (day, tag, user_id, key_id, tier, model, provider, capability)
);
