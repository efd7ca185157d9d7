-- Atomic reservation: the rule of gateway/store/rule.py, inside Redis, and its lease.
-- KEYS: 1..m the counter hashes; m+1 the user's override hash (when ARGV[2] == '1'); then per
--   lease group a sorted set (lease id -> deadline) and a hash (lease id -> amounts); then the
--   lease registry (when ARGV[8] == '1').
-- ARGV[1]: m; ARGV[2]: has_override; ARGV[3]: the m TTLs, comma-separated: seconds to set
--   when the hash is new (none of its counters held a value), minus seconds to set on every
--   call (a sliding time to live), 0 = keep;
-- ARGV[4]: one line per counter of 9 tab-separated values: key index, field, fixed, flex,
--   limit, limit override field, cap, cap override field, lease group (1-based);
-- ARGV[5]: the lease id ('' = none); ARGV[6]: lease seconds; ARGV[7]: lease groups;
-- ARGV[8]: '1' when the registry key is given.
-- (Packed into few strings because encoding ~60 separate arguments was the client's biggest
-- cost per request.)
-- Returns {denied (1-based, 0 = granted), then per counter: used, effective limit, grant}.
local m = tonumber(ARGV[1])
local base = m
local overrides = {}
if ARGV[2] == '1' then
  base = m + 1
  local flat = redis.call('HGETALL', KEYS[m + 1])
  -- an unparsable override is ignored, as on the read path
  for i = 1, #flat, 2 do
    if is_int(flat[i + 1]) then overrides[flat[i]] = tonumber(flat[i + 1]) end
  end
end
local groups = tonumber(ARGV[7])
local registry = nil
if ARGV[8] == '1' then registry = KEYS[base + 2 * groups + 1] end

local function effective(value, field)
  if field ~= '' and overrides[field] ~= nil then return overrides[field] end
  return int(value)
end

local function grant(fixed, flex, used, limit, cap)
  if flex > 0 and cap ~= -1 and flex > cap then flex = math.max(cap, 0) end
  if limit == -1 or fixed + flex == 0 then return fixed + flex end
  local room = limit - used - fixed
  if flex > 0 then
    if room < 1 then return nil end
    return fixed + math.min(flex, room)
  end
  if room < 0 then return nil end
  return fixed
end

local counters = {}
local field = '([^\t\n]*)'
local line = string.rep(field .. '\t', 8) .. field .. '\n'
for a, b, c, d, e, f, g, h, i in string.gmatch(ARGV[4] .. '\n', line) do
  counters[#counters + 1] = {a, b, c, d, e, f, g, h, i}
end

local out = {0}
local denied = 0
local existed = {}  -- key index -> true when one of its counters held a value
for i, v in ipairs(counters) do
  local key = KEYS[tonumber(v[1])]
  local stored = redis.call('HGET', key, v[2])
  local used = 0
  if stored then
    used = int(stored)
    existed[tonumber(v[1])] = true
  end
  local limit = effective(v[5], v[6])
  local cap = effective(v[7], v[8])
  local amount = grant(int(v[3]), int(v[4]), used, limit, cap)
  if amount == nil then
    if denied == 0 then denied = i end
    amount = 0
  end
  out[#out + 1] = used
  out[#out + 1] = limit
  out[#out + 1] = amount
end
out[1] = denied
if denied ~= 0 then return out end

local lease = ARGV[5]
local ttls = {}
for ttl in string.gmatch(ARGV[3], '[^,]+') do ttls[#ttls + 1] = int(ttl) end
if lease ~= '' then
  for g = 1, groups do
    expect(KEYS[base + 2 * g - 1], 'zset')
    expect(KEYS[base + 2 * g], 'hash')
  end
  if registry then expect(registry, 'zset') end
end

local payloads = {}
for i, v in ipairs(counters) do
  local amount = out[1 + (i - 1) * 3 + 3]
  if amount ~= 0 then
    local key = KEYS[tonumber(v[1])]
    redis.call('HINCRBY', key, v[2], amount)
    local g = tonumber(v[9]) or 0
    if g > 0 then
      payloads[g] = (payloads[g] or '') .. key .. '\t' .. v[2] .. '\t' .. amount .. '\n'
    end
  end
end
-- Every writer of a counter hash gives it its time to live when creating it, so a hash that
-- held a value already has one.
for k, ttl in ipairs(ttls) do
  if ttl < 0 then
    redis.call('EXPIRE', KEYS[k], -ttl)
  elseif ttl > 0 and not existed[k] then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
if lease ~= '' then
  local deadline = now_s() + int(ARGV[6])
  for g = 1, groups do
    if payloads[g] then
      local zset = KEYS[base + 2 * g - 1]
      redis.call('HSET', KEYS[base + 2 * g], lease, payloads[g])
      redis.call('ZADD', zset, deadline, lease)
      if registry then redis.call('ZADD', registry, 'LT', deadline, zset) end
    end
  end
end
return out
