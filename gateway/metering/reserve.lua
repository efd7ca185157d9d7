-- Atomic reservation: the rule of gateway/metering/decide.py, inside Redis.
-- KEYS[1..m]: the counter hashes; KEYS[m+1]: the user's override hash (when ARGV[2] == '1').
-- ARGV[1]: m; ARGV[2]: has_override; ARGV[3]: the m TTLs (seconds, 0 = keep), comma-separated;
-- ARGV[4]: one line per counter of 8 tab-separated values:
--   key index, field, fixed, flex, limit, limit override field, cap, cap override field.
-- (Packed into two strings because encoding ~60 separate arguments was the client's biggest
-- cost per request.)
-- Returns {denied (1-based, 0 = granted), then per counter: used, effective limit, grant}.
local m = tonumber(ARGV[1])
local overrides = {}
if ARGV[2] == '1' then
  local flat = redis.call('HGETALL', KEYS[m + 1])
  for i = 1, #flat, 2 do overrides[flat[i]] = tonumber(flat[i + 1]) end
end

local function effective(value, field)
  if field ~= '' and overrides[field] ~= nil then return overrides[field] end
  return tonumber(value)
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
for line in string.gmatch(ARGV[4], '[^\n]+') do
  local v = {}
  for value in string.gmatch(line .. '\t', '([^\t]*)\t') do v[#v + 1] = value end
  counters[#counters + 1] = v
end

local out = {0}
local denied = 0
for i, v in ipairs(counters) do
  local key = KEYS[tonumber(v[1])]
  local used = tonumber(redis.call('HGET', key, v[2])) or 0
  local limit = effective(v[5], v[6])
  local cap = effective(v[7], v[8])
  local amount = grant(tonumber(v[3]), tonumber(v[4]), used, limit, cap)
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

for i, v in ipairs(counters) do
  local amount = out[1 + (i - 1) * 3 + 3]
  if amount ~= 0 then redis.call('HINCRBY', KEYS[tonumber(v[1])], v[2], amount) end
end
local k = 0
for ttl in string.gmatch(ARGV[3], '[^,]+') do
  k = k + 1
  if tonumber(ttl) > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
end
return out
