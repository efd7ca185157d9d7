-- The coarse daily rollup: no user, key or tag, so a month of it is a few hundred rows per
-- model; the analytics read it when their filters and groups are among its dimensions.
CREATE TABLE IF NOT EXISTS usage_daily_models (
    day date NOT NULL,
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
    PRIMARY KEY (day, tier, model, provider, capability)
);

INSERT INTO usage_daily_models (day, tier, model, provider, capability, requests,
    prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks, latency_ms_sum)
SELECT day, tier, model, provider, capability, sum(requests), sum(prompt_tokens),
    sum(completion_tokens), sum(total_tokens), sum(cost_usd), sum(errors), sum(fallbacks),
    sum(latency_ms_sum)
FROM usage_daily GROUP BY 1, 2, 3, 4, 5
ON CONFLICT DO NOTHING;
