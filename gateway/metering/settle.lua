-- Settles a batch of finished requests in one call (standalone Redis only; a cluster uses a
-- pipeline because a batch spans hash slots).
-- KEYS: the distinct hashes the batch touches, then the usage stream last.
-- ARGV[1]: stream MAXLEN (approximate); ARGV[2]: number of requests; then per request:
--   n, then n x (key index, field, delta, ttl seconds, watch 0|1), then the record ('' = none).
-- Returns the new values of the watched fields, in order (the cost-alert totals).
local stream = KEYS[#KEYS]
local maxlen = ARGV[1]
local pos = 3
local watched = {}
local expiring = {}
for _ = 1, tonumber(ARGV[2]) do
  local n = tonumber(ARGV[pos])
  pos = pos + 1
  for _ = 1, n do
    local key = KEYS[tonumber(ARGV[pos])]
    local value = redis.call('HINCRBY', key, ARGV[pos + 1], ARGV[pos + 2])
    local ttl = tonumber(ARGV[pos + 3])
    if ttl > 0 then expiring[key] = ttl end
    if ARGV[pos + 4] == '1' then watched[#watched + 1] = value end
    pos = pos + 5
  end
  if ARGV[pos] ~= '' then
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'r', ARGV[pos])
  end
  pos = pos + 1
end
for key, ttl in pairs(expiring) do redis.call('EXPIRE', key, ttl) end
return watched
