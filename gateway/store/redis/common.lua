-- Shared by settle.lua and sweep.lua (prepended when the scripts are loaded, after is_int.lua).
-- A bad argument or a key of the wrong type fails a call without a partial write (Redis does
-- not roll scripts back): settle.lua checks every key's type before its first write;
-- reserve.lua's reads fail first on its counter keys, and it undoes its lease's writes.
-- (reserve.lua has is_int.lua alone: each of these functions is a closure made on every call,
-- ~0.7k Redis instructions each, and it calls none of them.)

-- An integer within +-2^53, else the call fails.
local function int(value)
  if not is_int(value) then
    error({err = 'ERR gateway: not an integer in range: ' .. tostring(value)})
  end
  return tonumber(value)
end

-- Fails unless ``key`` is of type ``kind`` or does not exist.
local function expect(key, kind)
  local found = redis.call('TYPE', key).ok
  if found ~= kind and found ~= 'none' then
    error({err = 'WRONGTYPE gateway: ' .. key .. ' is a ' .. found .. ', not a ' .. kind})
  end
end

-- HINCRBY that never leaves a counter below zero; returns the new value, and whether the
-- hash may be new (the field held no value, or none that was an integer: a hash whose field
-- held one already has its time to live). A field holding no integer (or one that would
-- overflow) is replaced rather than failing every later call.
local function add(key, field, delta)
  local value = redis.pcall('HINCRBY', key, field, delta)
  local fresh = false
  if type(value) == 'table' and value.err then
    value = tonumber(delta)
    fresh = true
    redis.call('HSET', key, field, value)
  elseif value == tonumber(delta) then
    fresh = true
  end
  if value < 0 then
    redis.call('HSET', key, field, 0)
    return 0, fresh
  end
  return value, fresh
end

-- Gives back the amounts a lease recorded ("key\tfield\tamount" lines), skipping keys that
-- expired meanwhile (so none is recreated without its time to live).
local function give_back(payload)
  for line in string.gmatch(payload, '[^\n]+') do
    local key, field, amount = string.match(line, '^([^\t]*)\t([^\t]*)\t([^\t]*)$')
    if key and is_int(amount) and redis.call('EXISTS', key) == 1
        and redis.call('TYPE', key).ok == 'hash' then
      add(key, field, -tonumber(amount))
    end
  end
end

local function now_s()
  return tonumber(redis.call('TIME')[1])
end

-- Gives back and removes up to ``limit`` leases of one group that expired by ``now``;
-- returns {how many, the next deadline or -1 when the group holds none}.
local function sweep_group(zset, data, now, limit)
  expect(zset, 'zset')
  expect(data, 'hash')
  local due = redis.call('ZRANGEBYSCORE', zset, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    local payload = redis.call('HGET', data, id)
    if payload then give_back(payload) end
    redis.call('HDEL', data, id)
    redis.call('ZREM', zset, id)
  end
  local first = redis.call('ZRANGE', zset, 0, 0, 'WITHSCORES')
  if #first == 0 then return {#due, -1} end
  return {#due, tonumber(first[2])}
end
