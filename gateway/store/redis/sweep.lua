-- Gives back the reservations whose lease expired (their worker died, or their reply was lost).
-- ARGV[1]: 'registry' or 'group'; ARGV[2]: most groups per call; ARGV[3]: most leases per group.
-- 'registry' (standalone Redis): KEYS[1] the registry (lease sorted set -> its next deadline);
--   every due group is swept and its registry entry moved to its next deadline or removed.
-- 'group' (a cluster, where the registry sits in another slot): KEYS[1], KEYS[2] one group's
--   sorted set and hash; returns {leases ended, next deadline or -1}.
-- Returns {leases ended, groups left due}.
local now = now_s()
local limit = tonumber(ARGV[3])
if ARGV[1] == 'group' then
  return sweep_group(KEYS[1], KEYS[2], now, limit)
end
local registry = KEYS[1]
expect(registry, 'zset')
local due = redis.call('ZRANGEBYSCORE', registry, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local ended = 0
for _, zset in ipairs(due) do
  local result = sweep_group(zset, zset .. ':d', now, limit)
  ended = ended + result[1]
  if result[2] < 0 then
    redis.call('ZREM', registry, zset)
  else
    redis.call('ZADD', registry, 'XX', result[2], zset)
  end
end
return {ended, redis.call('ZCOUNT', registry, '-inf', now)}
