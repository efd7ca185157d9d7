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
--
-- Cost: every Lua function call (``tonumber`` and ``string.*`` included) costs about as much
-- as a Redis command inside a script, so the gateway-built numbers are checked by pattern and
-- length only, the rule is inlined, each hash is read with one HMGET and written with one
-- HSET (the script is atomic: the new values are known), rather than one HGET and one HINCRBY
-- per counter.
local m = ARGV[1] + 0
local base = m
local overrides = nil
if ARGV[2] == '1' then
  base = m + 1
  local flat = redis.call('HGETALL', KEYS[m + 1])
  -- an unparsable override is ignored, as on the read path
  for i = 1, #flat, 2 do
    if is_int(flat[i + 1]) then
      overrides = overrides or {}
      overrides[flat[i]] = tonumber(flat[i + 1])
    end
  end
end
local groups = ARGV[7] + 0
local registry = nil
if ARGV[8] == '1' then registry = KEYS[base + 2 * groups + 1] end

-- Integers (at most 16 characters: within +-10^16, exact but for the last digit past 2^53).
local number = '(%-?%d+)'
local text = '([^\t\n]*)'
local line = '(%d+)\t' .. text .. '\t' .. number .. '\t' .. number .. '\t' .. number .. '\t'
  .. text .. '\t' .. number .. '\t' .. text .. '\t(%d+)'
local counters = {}
local fields = {}  -- key index -> the fields its HMGET reads
local count = 0
for k, field, fixed, flex, limit, limit_field, cap, cap_field, g in string.gmatch(ARGV[4], line) do
  if #fixed > 16 or #flex > 16 or #limit > 16 or #cap > 16 then
    error({err = 'ERR gateway: not an integer in range: ' .. fixed .. ' ' .. flex .. ' '
      .. limit .. ' ' .. cap})
  end
  k = k + 0
  local names = fields[k]
  if names == nil then
    names = {}
    fields[k] = names
  end
  names[#names + 1] = field
  count = count + 1
  counters[count] = {k, field, fixed, flex, limit, limit_field, cap, cap_field, g + 0, #names}
end
all_lines(ARGV[4], count)
local stored = {}
for k, names in pairs(fields) do stored[k] = redis.call('HMGET', KEYS[k], unpack(names)) end

local out = {0}
local denied = 0
local existed = {}  -- key index -> true when one of its counters held a value
for i = 1, count do
  local v = counters[i]
  local value = stored[v[1]][v[10]]
  local used = 0
  if value then
    -- inlined (a call per value costs more than the check): an integer within +-2^53
    used = tonumber(value)
    if not used or used % 1 ~= 0 or used > 9007199254740992 or used < -9007199254740992 then
      error({err = 'ERR gateway: not an integer in range: ' .. value})
    end
    existed[v[1]] = true
  end
  local limit = overrides and v[6] ~= '' and overrides[v[6]] or v[5] + 0
  local fixed = v[3] + 0
  local amount = fixed
  if v[4] ~= '0' then  -- flex: first capped, then shrunk to the room left
    local flex = v[4] + 0
    local cap = overrides and v[8] ~= '' and overrides[v[8]] or v[7] + 0
    if flex > 0 and cap ~= -1 and flex > cap then flex = math.max(cap, 0) end
    amount = fixed + flex
    if limit ~= -1 and amount ~= 0 then
      local room = limit - used - fixed
      if flex > 0 then
        if room < 1 then amount = nil else amount = fixed + math.min(flex, room) end
      elseif room < 0 then
        amount = nil
      else
        amount = fixed
      end
    end
  elseif limit ~= -1 and fixed ~= 0 and limit - used - fixed < 0 then
    amount = nil
  end
  if amount == nil then
    if denied == 0 then denied = i end
    amount = 0
  end
  out[3 * i - 1] = used
  out[3 * i] = limit
  out[3 * i + 1] = amount
end
out[1] = denied
if denied ~= 0 then return out end

local lease = ARGV[5]
if lease ~= '' then
  for g = 1, groups do
    expect(KEYS[base + 2 * g - 1], 'zset')
    expect(KEYS[base + 2 * g], 'hash')
  end
  if registry then expect(registry, 'zset') end
end

-- The new values per hash (a field named twice gets both grants, as two HINCRBYs would).
local totals = {}  -- key index -> {field, value, field, value, ...}
local payloads = {}
for i = 1, count do
  local amount = out[3 * i + 1]
  if amount ~= 0 then
    local v = counters[i]
    local pairs_of = totals[v[1]]
    if pairs_of == nil then
      pairs_of = {}
      totals[v[1]] = pairs_of
    end
    local at = nil
    for j = 1, #pairs_of, 2 do
      if pairs_of[j] == v[2] then at = j end
    end
    if at then
      pairs_of[at + 1] = pairs_of[at + 1] + amount
    else
      pairs_of[#pairs_of + 1] = v[2]
      pairs_of[#pairs_of + 1] = out[3 * i - 1] + amount
    end
    local g = v[9]
    if g > 0 then
      -- the fixed amount as the gateway wrote it: no number to format
      local shown = amount
      if v[4] == '0' then shown = v[3] end
      -- lines gathered in a table and joined once (a string grown line by line is copied
      -- and hashed again for every line: a team key has some forty)
      local lines = payloads[g]
      if lines == nil then
        lines = {}
        payloads[g] = lines
      end
      lines[#lines + 1] = KEYS[v[1]] .. '\t' .. v[2] .. '\t' .. shown .. '\n'
    end
  end
end
for k, pairs_of in pairs(totals) do redis.call('HSET', KEYS[k], unpack(pairs_of)) end
-- Every writer of a counter hash gives it its time to live when creating it, so a hash that
-- held a value already has one.
local k = 0
for ttl in string.gmatch(ARGV[3], number) do
  k = k + 1
  if #ttl > 16 then error({err = 'ERR gateway: not an integer in range: ' .. ttl}) end
  if string.byte(ttl, 1) == 45 then  -- 45: '-', a sliding time to live
    redis.call('EXPIRE', KEYS[k], string.sub(ttl, 2))
  elseif ttl ~= '0' and not existed[k] then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
if lease ~= '' then
  if #ARGV[6] > 16 then error({err = 'ERR gateway: not an integer in range: ' .. ARGV[6]}) end
  local deadline = now_s() + ARGV[6]
  for g = 1, groups do
    if payloads[g] then
      local zset = KEYS[base + 2 * g - 1]
      redis.call('HSET', KEYS[base + 2 * g], lease, table.concat(payloads[g]))
      redis.call('ZADD', zset, deadline, lease)
      if registry then redis.call('ZADD', registry, 'LT', deadline, zset) end
    end
  end
end
return out
