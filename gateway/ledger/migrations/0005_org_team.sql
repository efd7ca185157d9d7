-- Organizations and teams (docs/organizations.md): a team key's records carry its organization
-- and team ('' for a key in no team), as columns of the rows and as parts of the daily rollups'
-- keys, so the analytics filter and group by them from the rollups as from the rows.
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS org text NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN IF NOT EXISTS team text NOT NULL DEFAULT '';
UPDATE usage_records
SET org = left(coalesce(record->>'org', ''), 512), team = left(coalesce(record->>'team', ''), 512)
WHERE record->>'org' IS NOT NULL OR record->>'team' IS NOT NULL;

ALTER TABLE usage_daily ADD COLUMN IF NOT EXISTS org text NOT NULL DEFAULT '';
ALTER TABLE usage_daily ADD COLUMN IF NOT EXISTS team text NOT NULL DEFAULT '';
ALTER TABLE usage_daily DROP CONSTRAINT IF EXISTS usage_daily_pkey;
ALTER TABLE usage_daily
    ADD PRIMARY KEY (day, user_id, key_id, tier, model, provider, capability, org, team);
CREATE INDEX IF NOT EXISTS usage_daily_org_day ON usage_daily (org, day);
CREATE INDEX IF NOT EXISTS usage_daily_team_day ON usage_daily (team, day);

ALTER TABLE usage_daily_tags ADD COLUMN IF NOT EXISTS org text NOT NULL DEFAULT '';
ALTER TABLE usage_daily_tags ADD COLUMN IF NOT EXISTS team text NOT NULL DEFAULT '';
ALTER TABLE usage_daily_tags DROP CONSTRAINT IF EXISTS usage_daily_tags_pkey;
ALTER TABLE usage_daily_tags
    ADD PRIMARY KEY (day, tag, user_id, key_id, tier, model, provider, capability, org, team);

-- The days whose records already carry an organization or team are rolled up again from their
-- rows (the rows of a day are kept or dropped whole, by partition, so a day's rollup is exactly
-- the sum of its rows); other days' rollups are unchanged: their records are in no team.
CREATE TEMPORARY TABLE team_days ON COMMIT DROP AS
SELECT DISTINCT day FROM usage_records WHERE org <> '' OR team <> '';

DELETE FROM usage_daily WHERE day IN (SELECT day FROM team_days);
INSERT INTO usage_daily (day, user_id, key_id, tier, model, provider, capability, org, team,
    requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks,
    latency_ms_sum)
SELECT day, user_id, key_id, tier, model, provider, capability, org, team, count(*),
    sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd),
    count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE fallback), sum(latency_ms)
FROM usage_records WHERE day IN (SELECT day FROM team_days)
GROUP BY day, user_id, key_id, tier, model, provider, capability, org, team;

DELETE FROM usage_daily_tags WHERE day IN (SELECT day FROM team_days);
INSERT INTO usage_daily_tags (day, tag, user_id, key_id, tier, model, provider, capability, org,
    team, requests, prompt_tokens, completion_tokens, total_tokens, cost_usd, errors, fallbacks,
    latency_ms_sum)
SELECT day, tag, user_id, key_id, tier, model, provider, capability, org, team, count(*),
    sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost_usd),
    count(*) FILTER (WHERE status >= 400), count(*) FILTER (WHERE fallback), sum(latency_ms)
FROM usage_records, unnest(tags) AS tag WHERE day IN (SELECT day FROM team_days)
GROUP BY day, tag, user_id, key_id, tier, model, provider, capability, org, team;
