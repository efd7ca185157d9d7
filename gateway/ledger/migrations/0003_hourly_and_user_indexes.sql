-- One user's (or one tag's) days in the daily rollups without reading every user's rows of
-- those days; and an hourly coarse rollup for the partial days at a range's edges and for
-- hourly buckets (a few rows per model and hour).
CREATE INDEX IF NOT EXISTS usage_daily_user_day ON usage_daily (user_id, day);
CREATE INDEX IF NOT EXISTS usage_daily_tags_tag_day ON usage_daily_tags (tag, day);

CREATE TABLE IF NOT EXISTS usage_hourly_models (
    hour timestamptz NOT NULL,
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
    PRIMARY KEY (hour, tier, model, provider, capability)
);

INSERT INTO usage_hourly_models (hour, tier, model, provider, capability, requests,
    prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks, latency_ms_sum)
SELECT date_trunc('hour', ts, 'UTC'), tier, model, provider, capability, count(*), sum(prompt_tokens),
    sum(completion_tokens), sum(total_tokens), sum(cost_usd),
    count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE fallback), sum(latency_ms)
FROM usage_records GROUP BY 1, 2, 3, 4, 5
ON CONFLICT DO NOTHING;
