-- Settles a batch of finished requests in one call (standalone Redis only; a cluster uses a
-- pipeline because a batch spans hash slots).
-- KEYS: the distinct hashes the batch touches, then the usage stream last.
-- ARGV[1]: stream MAXLEN (approximate); ARGV[2]: one line per increment of 5 tab-separated
-- values (key index, field, delta, ttl seconds, watch 0|1); ARGV[3..]: the usage records.
-- (Packed into one string because encoding hundreds of separate arguments per batch was the
-- client's biggest cost.)
-- Returns the new values of the watched fields, in order (the cost-alert totals).
local stream = KEYS[#KEYS]
local watched = {}
local expiring = {}
for line in string.gmatch(ARGV[2], '[^\n]+') do
  local v = {}
  for value in string.gmatch(line .. '\t', '([^\t]*)\t') do v[#v + 1] = value end
  local key = KEYS[tonumber(v[1])]
  local value = redis.call('HINCRBY', key, v[2], v[3])
  local ttl = tonumber(v[4])
  if ttl > 0 then expiring[key] = ttl end
  if v[5] == '1' then watched[#watched + 1] = value end
end
for i = 3, #ARGV do
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[i])
end
for key, ttl in pairs(expiring) do redis.call('EXPIRE', key, ttl) end
return watched
