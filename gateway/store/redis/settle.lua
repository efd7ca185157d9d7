-- Settles a batch of finished requests in one call: on a standalone Redis the whole batch, on a
-- cluster the part of it in one hash slot.
-- KEYS: ARGV[3] = "h,l,s,i,d": h hashes, then l lease pairs (sorted set, hash), then s (0 or 1)
--   the usage stream, then i per-user day index lists, then d (0 or 1) the once-only mark.
-- ARGV[1]: stream MAXLEN (approximate), also the most entries an index list keeps; ARGV[2]: one line per increment of 5 tab-separated
-- values (key index, field, delta, ttl seconds, watch 0|1); ARGV[4]: the mark's seconds;
-- ARGV[5]: one line per lease to end: lease pair index, lease id, then 'g' (give back what
--   the lease holds, if it is still there) or 'c' followed by (key index, field, amount, ttl)
--   per grant, added back only if the lease is gone (the increments already subtract them);
-- ARGV[6]: index seconds;
-- ARGV[7]: 'id' to add each record to the stream and its entry id to its index list, 'record'
--   to add the record itself to its index list only (a cluster: the stream is in another slot);
-- ARGV[8]: marks of earlier batches to delete, one per line (their replies arrived);
-- ARGV[9..]: per usage record its index list's number (0 = none: stream only), then the record.
-- (Packed into few strings because encoding hundreds of separate arguments per batch was the
-- client's biggest cost.)
-- Returns {1, the new values of the watched fields in order (the cost-alert totals)}, or {0}
-- when the mark says this batch was already applied.
local h, l, s, i, d = string.match(ARGV[3], '^(%d+),(%d+),(%d+),(%d+),(%d+)$')
h, l, s, i, d = tonumber(h), tonumber(l), tonumber(s), tonumber(i), tonumber(d)
local stream = KEYS[h + 2 * l + 1]
local lists = h + 2 * l + s
local by_id = ARGV[7] == 'id'

local increments = {}
local field = '([^\t\n]*)'
local line = string.rep(field .. '\t', 4) .. field .. '\n'
for a, b, c, e, f in string.gmatch(ARGV[2] .. '\n', line) do
  increments[#increments + 1] = {KEYS[int(a)], b, int(c), int(e), f == '1'}
end
local leases = {}
for line in string.gmatch(ARGV[5], '[^\n]+') do
  local v = {}
  for value in string.gmatch(line .. '\t', '([^\t]*)\t') do v[#v + 1] = value end
  local pair = int(v[1])
  local held = {}
  for j = 4, #v, 4 do held[#held + 1] = {KEYS[int(v[j])], v[j + 1], int(v[j + 2]), int(v[j + 3])} end
  leases[#leases + 1] = {KEYS[h + 2 * pair - 1], KEYS[h + 2 * pair], v[2], v[3], held}
end
for k = 1, h do expect(KEYS[k], 'hash') end
for k = 1, l do
  expect(KEYS[h + 2 * k - 1], 'zset')
  expect(KEYS[h + 2 * k], 'hash')
end
if s == 1 then expect(stream, 'stream') end
for k = 1, i do expect(KEYS[lists + k], 'list') end
local index_ttl = int(ARGV[6])

for mark in string.gmatch(ARGV[8], '[^\n]+') do redis.call('DEL', mark) end
if d == 1 and not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', int(ARGV[4])) then
  return {0}
end

local expiring = {}
local trimmed = {}
for _, lease in ipairs(leases) do
  if lease[4] == 'g' then
    local payload = redis.call('HGET', lease[2], lease[3])
    if payload then
      give_back(payload)
      redis.call('HDEL', lease[2], lease[3])
    end
  elseif redis.call('HDEL', lease[2], lease[3]) == 0 then  -- the sweeper gave it back
    for _, grant in ipairs(lease[5]) do
      add(grant[1], grant[2], grant[3])
      if grant[4] > 0 then expiring[grant[1]] = grant[4] end
    end
  end
  redis.call('ZREM', lease[1], lease[3])
end
local watched = {1}
for _, v in ipairs(increments) do
  local value = add(v[1], v[2], v[3])
  if v[4] > 0 then expiring[v[1]] = v[4] end
  if v[5] then watched[#watched + 1] = value end
end
for k = 9, #ARGV, 2 do
  local list = int(ARGV[k])
  local entry = ARGV[k + 1]
  if by_id or list == 0 then
    entry = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'r', ARGV[k + 1])
  end
  if list > 0 then
    local key = KEYS[lists + list]
    redis.call('RPUSH', key, entry)
    expiring[key] = index_ttl
    trimmed[key] = true
  end
end
-- The index keeps no more than the stream: its older ids would name trimmed entries. Trimmed
-- here, once per list per call, so each record costs O(1) amortised.
for key in pairs(trimmed) do redis.call('LTRIM', key, -int(ARGV[1]), -1) end
for key, ttl in pairs(expiring) do redis.call('EXPIRE', key, ttl) end
return watched
