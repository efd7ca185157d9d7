-- Atomic reservation: the rule of gateway/store/rule.py, inside Redis, and its lease.
-- KEYS: 1..m the counter hashes; m+1 the user's override hash (when ARGV[2] == '1'); then,
--   with a lease, its sorted set (lease id -> deadline) and hash (lease id -> amounts): ONE
--   group holds the whole reservation, whatever the slots of its counters; then the lease
--   registry (when ARGV[7] == '1').
-- ARGV[1]: m; ARGV[2]: has_override; ARGV[3]: the m TTLs, comma-separated: seconds to set
--   when the hash is new (none of its counters held a value), minus seconds to set on every
--   call (a sliding time to live), 0 = keep;
-- ARGV[4]: one line per counter of 8 tab-separated values: key index, field, fixed, flex,
--   limit, limit override field, cap, cap override field;
-- ARGV[5]: the lease id ('' = none); ARGV[6]: lease seconds; ARGV[7]: '1' when the registry
--   key is given; ARGV[8]: the counters after ARGV[4]'s, each with no flex, no override and
--   no cap (most of a team key's): one line of 4 values each: key index, field, fixed, limit.
-- (Packed into few strings because encoding ~60 separate arguments was the client's biggest
-- cost per request.)
-- Returns {denied (1-based, 0 = granted), then per counter: used, effective limit, grant}.
--
-- Cost: every Lua function call (``tonumber`` and ``string.*`` included) costs about as much
-- as a Redis command inside a script, so the gateway-built numbers are checked by pattern and
-- length only (the gateway builds them; a line the pattern skips fails the call), the rule is
-- inlined, each hash is read with one HMGET and written with one HSET (the script is atomic:
-- the new values are known). No TYPE checks: the HMGETs fail on a counter key of another type
-- before any write, and the lease's writes come first, each undone if the next one fails.
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

-- Integers (at most 16 characters: within +-10^16, exact but for the last digit past 2^53).
-- A counter is one table built at once (a table grown entry by entry is rehashed as it grows),
-- its key index read once per key (a number read from a string costs about a short match).
local counters = {}
local fields = {}  -- key index -> the fields its HMGET reads
local index_of = {}  -- key index as written -> as a number
local count = 0
-- (patterns written out whole: a pattern joined from parts is joined again on every call)
local line = '()(%d+)\t([^\t\n]*)\t(%-?%d+)\t(%-?%d+)\t(%-?%d+)\t([^\t\n]*)\t(%-?%d+)\t([^\t\n]*)\n?()'
local at = 1  -- where the next line must start: a line the pattern skips fails the call
for start, k, field, fixed, flex, limit, limit_field, cap, cap_field, after
    in string.gmatch(ARGV[4], line) do
  if start ~= at or #fixed > 16 or #flex > 16 or #limit > 16 or #cap > 16 then
    error({err = 'ERR gateway: malformed argument line or integer out of range near ' .. start})
  end
  at = after
  local index = index_of[k]
  local names = nil
  if index == nil then
    index = k + 0
    index_of[k] = index
    names = {field}  -- made with its first entry: one growth less
    fields[index] = names
  else
    names = fields[index]
    names[#names + 1] = field
  end
  count = count + 1
  counters[count] = {index, field, fixed, flex, limit, limit_field, cap, cap_field, #names}
end
if at ~= #ARGV[4] + 1 then
  error({err = 'ERR gateway: malformed argument line near ' .. at})
end
-- The plain counters (no flex, no override, no cap), after the others: four values a line.
local short = '()(%d+)\t([^\t\n]*)\t(%-?%d+)\t(%-?%d+)\n?()'
at = 1
for start, k, field, fixed, limit, after in string.gmatch(ARGV[8], short) do
  if start ~= at or #fixed > 16 or #limit > 16 then
    error({err = 'ERR gateway: malformed argument line or integer out of range near ' .. start})
  end
  at = after
  local index = index_of[k]
  local names = nil
  if index == nil then
    index = k + 0
    index_of[k] = index
    names = {field}  -- made with its first entry: one growth less
    fields[index] = names
  else
    names = fields[index]
    names[#names + 1] = field
  end
  count = count + 1
  counters[count] = {index, field, fixed, '0', limit, '', '-1', '', #names}
end
if at ~= #ARGV[8] + 1 then
  error({err = 'ERR gateway: malformed argument line near ' .. at})
end
local stored = {}
for k, names in pairs(fields) do stored[k] = redis.call('HMGET', KEYS[k], unpack(names)) end

local out = {0}
local denied = 0
local existed = {}  -- key index -> true when one of its counters held a value
for i = 1, count do
  local v = counters[i]
  local k = v[1]
  local value = stored[k][v[9]]
  local used = 0
  if value then
    -- inlined (a call per value costs more than the check): an integer within +-2^53
    used = tonumber(value)
    if not used or used % 1 ~= 0 or used > 9007199254740992 or used < -9007199254740992 then
      error({err = 'ERR gateway: not an integer in range: ' .. value})
    end
    existed[k] = true
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

-- The new values per hash (a field named twice gets both grants, as two HINCRBYs would),
-- and the lease's lines (gathered in a table and joined once: a string grown line by line is
-- copied and hashed again for every line, and a team key has some forty).
local totals = {}  -- key index -> {field, value, field, value, ...}
local lines = {}
local lease = ARGV[5]
for i = 1, count do
  local amount = out[3 * i + 1]
  if amount ~= 0 then
    local v = counters[i]
    local k, field = v[1], v[2]
    local pairs_of = totals[k]
    if pairs_of == nil then
      totals[k] = {field, out[3 * i - 1] + amount}
    else
      local found = nil
      for j = 1, #pairs_of, 2 do
        if pairs_of[j] == field then found = j end
      end
      if found then
        pairs_of[found + 1] = pairs_of[found + 1] + amount
      else
        pairs_of[#pairs_of + 1] = field
        pairs_of[#pairs_of + 1] = out[3 * i - 1] + amount
      end
    end
    if lease ~= '' then
      -- the fixed amount as the gateway wrote it: no number to format
      local shown = amount
      if v[4] == '0' then shown = v[3] end
      lines[#lines + 1] = KEYS[k] .. '\t' .. field .. '\t' .. shown .. '\n'
    end
  end
end
local ttls = {}
for ttl in string.gmatch(ARGV[3], '%-?%d+') do
  if #ttl > 16 then error({err = 'ERR gateway: not an integer in range: ' .. ttl}) end
  ttls[#ttls + 1] = ttl
end
if #ttls ~= m then error({err = 'ERR gateway: ' .. #ttls .. ' times to live for ' .. m .. ' keys'}) end
-- The lease first: a key of the wrong type fails the call here, with what was written undone.
if #lines > 0 then
  if #ARGV[6] > 16 then error({err = 'ERR gateway: not an integer in range: ' .. ARGV[6]}) end
  local deadline = now_s() + ARGV[6]
  local zset, data = KEYS[base + 1], KEYS[base + 2]
  local done = redis.pcall('ZADD', zset, deadline, lease)
  if type(done) == 'table' and done.err then error(done) end
  done = redis.pcall('HSET', data, lease, table.concat(lines))
  if type(done) == 'table' and done.err then
    redis.call('ZREM', zset, lease)
    error(done)
  end
  if ARGV[7] == '1' then
    done = redis.pcall('ZADD', KEYS[base + 3], 'LT', deadline, zset)
    if type(done) == 'table' and done.err then
      redis.call('HDEL', data, lease)
      redis.call('ZREM', zset, lease)
      error(done)
    end
  end
end
for k, pairs_of in pairs(totals) do redis.call('HSET', KEYS[k], unpack(pairs_of)) end
-- Every writer of a counter hash gives it its time to live when creating it, so a hash that
-- held a value already has one.
for k = 1, m do
  local ttl = ttls[k]
  if string.byte(ttl, 1) == 45 then  -- 45: '-', a sliding time to live
    redis.call('EXPIRE', KEYS[k], string.sub(ttl, 2))
  elseif ttl ~= '0' and not existed[k] then
    redis.call('EXPIRE', KEYS[k], ttl)
  end
end
return out
