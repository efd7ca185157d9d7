-- Atomic reservation: the rule of gateway/metering/decide.py, inside Redis.
-- KEYS[1..m]: the counter hashes; KEYS[m+1]: the user's override hash (when ARGV[2] == '1').
-- ARGV: m, has_override, m TTLs (seconds, 0 = keep), then per counter 8 values:
--   key index, field, fixed, flex, limit, limit override field, cap, cap override field.
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

local base = 2 + m
local n = (#ARGV - base) / 8
local out = {0}
local denied = 0
for i = 1, n do
  local a = base + (i - 1) * 8
  local key = KEYS[tonumber(ARGV[a + 1])]
  local field = ARGV[a + 2]
  local used = tonumber(redis.call('HGET', key, field)) or 0
  local limit = effective(ARGV[a + 5], ARGV[a + 6])
  local cap = effective(ARGV[a + 7], ARGV[a + 8])
  local amount = grant(tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), used, limit, cap)
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

for i = 1, n do
  local a = base + (i - 1) * 8
  local amount = out[1 + (i - 1) * 3 + 3]
  if amount ~= 0 then
    redis.call('HINCRBY', KEYS[tonumber(ARGV[a + 1])], ARGV[a + 2], amount)
  end
end
for k = 1, m do
  local ttl = tonumber(ARGV[2 + k])
  if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
end
return out
