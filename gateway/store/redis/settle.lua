-- Settles a batch of finished requests in one call: on a standalone Redis the whole batch, on a
-- cluster the part of it in one hash slot.
-- KEYS: ARGV[3] = "h,l,s,i,d": h hashes, then l lease pairs (sorted set, hash), then s (0 or 1)
--   the usage stream, then i per-user day index lists, then d (0 or 1) the once-only mark.
-- ARGV[1]: stream MAXLEN (approximate), also the most entries an index list keeps;
-- ARGV[2]: one line per increment of 5 tab-separated
-- values (key index, field, delta, ttl seconds, watch 0|1); ARGV[4]: the mark's seconds;
-- ARGV[5]: one line per lease to end: lease pair index, lease id, then 'g' (give back what
--   the lease holds, if it is still there) or 'c' followed by (key index, field, amount, ttl)
--   per grant, added back only if the lease is gone (the increments already subtract them);
-- ARGV[6]: index seconds;
-- ARGV[7]: 'id' to add each record to the stream and its entry id to its index list, 'record'
--   to add the record itself to its index list only (a cluster: the stream is in another slot);
-- ARGV[8]: marks of earlier batches to delete, one per line (their replies arrived);
-- ARGV[9]: one line per write shared by several hashes (a level's window hashes, which count
--   the same usage): the first hash's key index, ':', each hash's ttl seconds comma-separated
--   (the hashes are that many KEYS in turn), then per field a tab, the field, a tab and the
--   delta; no field of these hashes is in ARGV[2];
-- ARGV[10..]: per usage record its index list's number (0 = none: stream only), then the record.
-- (Packed into few strings because encoding hundreds of separate arguments per batch was the
-- client's biggest cost.)
-- Returns {1, the new values of the watched fields in order (the cost-alert totals)}, or {0}
-- when the mark says this batch was already applied.
local h, l, s, i, d = string.match(ARGV[3], '^(%d+),(%d+),(%d+),(%d+),(%d+)$')
h, l, s, i, d = tonumber(h), tonumber(l), tonumber(s), tonumber(i), tonumber(d)
local stream = KEYS[h + 2 * l + 1]
local lists = h + 2 * l + s
local by_id = ARGV[7] == 'id'

-- Gateway-built numbers are checked by pattern and length (no Lua call per value: those were
-- most of the script's time); a field holding no integer still fails or is replaced (``add``).
local increments = {}
local at = 1  -- where the next line must start: a line the pattern skips fails the call
for start, a, b, c, e, f, after
    in string.gmatch(ARGV[2], '()(%d+)\t([^\t\n]*)\t(%-?%d+)\t(%d+)\t([01])\n?()') do
  if start ~= at or #c > 17 then
    error({err = 'ERR gateway: malformed increment line or integer out of range near ' .. start})
  end
  at = after
  increments[#increments + 1] = {KEYS[a + 0], b, c, e, f == '1'}
end
if at ~= #ARGV[2] + 1 then error({err = 'ERR gateway: malformed increment line near ' .. at}) end
-- Shared lines: each {its hashes' {key, ttl}, its fields and deltas in turn}.
local shared = {}
at = 1
for start, first, ttls, writes, after
    in string.gmatch(ARGV[9], '()(%d+):([%d,]+)([^\n]*)\n?()') do
  if start ~= at then error({err = 'ERR gateway: malformed shared line near ' .. start}) end
  at = after
  local hashes, fields, next_at, k = {}, {}, 1, first + 0
  for from, ttl, to in string.gmatch(ttls, '()(%d+),?()') do
    if from ~= next_at or k > h then
      error({err = 'ERR gateway: malformed shared line near ' .. start})
    end
    next_at = to
    hashes[#hashes + 1] = {KEYS[k], ttl}
    k = k + 1
  end
  if next_at ~= #ttls + 1 or k == first + 0 then
    error({err = 'ERR gateway: malformed shared line near ' .. start})
  end
  next_at = 1
  for from, field, delta, to in string.gmatch(writes, '()\t([^\t]*)\t(%-?%d+)()') do
    if from ~= next_at or #delta > 17 then
      error({err = 'ERR gateway: malformed shared line or integer out of range near ' .. start})
    end
    next_at = to
    fields[#fields + 1] = field
    fields[#fields + 1] = delta
  end
  if next_at ~= #writes + 1 or #fields == 0 then
    error({err = 'ERR gateway: malformed shared line near ' .. start})
  end
  shared[#shared + 1] = {hashes, fields}
end
if at ~= #ARGV[9] + 1 then error({err = 'ERR gateway: malformed shared line near ' .. at}) end
-- Per lease pair: its lease ids, and per lease whether to give back what it holds ('g') or
-- the grants to add back when it is gone ('c', where they start and end in ARGV[5]: read
-- only then). Lines are found by a plain search for their end (a pattern run over the grants,
-- hundreds of characters a lease, cost a third of the script).
local ends_arg = ARGV[5]
local pair_ids, pair_ends = {}, {}
local pos, size = 1, #ends_arg
while pos <= size do
  local stop = string.find(ends_arg, '\n', pos, true) or size + 1
  local pair, id, kind, from = string.match(ends_arg, '^(%d+)\t([^\t\n]*)\t([gc])()', pos)
  if pair == nil then error({err = 'ERR gateway: malformed lease line near ' .. pos}) end
  pair = pair + 0
  local ids = pair_ids[pair]
  if ids == nil then
    ids = {}
    pair_ids[pair] = ids
    pair_ends[pair] = {}
  end
  ids[#ids + 1] = id
  pair_ends[pair][#ids] = {kind, from, stop - 1}
  pos = stop + 1
end
for k = 1, h do expect(KEYS[k], 'hash') end
for k = 1, l do
  expect(KEYS[h + 2 * k - 1], 'zset')
  expect(KEYS[h + 2 * k], 'hash')
end
if s == 1 then expect(stream, 'stream') end
for k = 1, i do expect(KEYS[lists + k], 'list') end
local index_ttl = int(ARGV[6])
local maxlen = int(ARGV[1])

for mark in string.gmatch(ARGV[8], '[^\n]+') do redis.call('DEL', mark) end
if d == 1 and not redis.call('SET', KEYS[#KEYS], '1', 'NX', 'EX', int(ARGV[4])) then
  return {0}
end

local expiring = {}
local trimmed = {}
-- One read, one delete and one removal per lease pair, whatever the number of leases.
for pair, ids in pairs(pair_ids) do
  local data = KEYS[h + 2 * pair]
  local payloads = redis.call('HMGET', data, unpack(ids))
  local endings = pair_ends[pair]
  for n = 1, #endings do
    local ending = endings[n]
    if ending[1] == 'g' then
      if payloads[n] then give_back(payloads[n]) end
    elseif not payloads[n] then  -- the sweeper gave it back
      local held = string.sub(ends_arg, ending[2], ending[3])
      for k, name, amount, ttl in string.gmatch(held, '\t(%d+)\t([^\t]*)\t(%-?%d+)\t(%d+)') do
        local _, fresh = add(KEYS[k + 0], name, amount)
        if fresh and ttl ~= '0' then expiring[KEYS[k + 0]] = ttl end
      end
    end
  end
  redis.call('HDEL', data, unpack(ids))
  redis.call('ZREM', KEYS[h + 2 * pair - 1], unpack(ids))
end
local watched = {1}
-- A time to live only for a hash that may be new: every writer gives one it creates its own.
for n = 1, #increments do
  local v = increments[n]
  local value, fresh = add(v[1], v[2], v[3])
  if fresh and v[4] ~= '0' then expiring[v[1]] = v[4] end
  if v[5] then watched[#watched + 1] = value end
end
for n = 1, #shared do
  local hashes, fields = shared[n][1], shared[n][2]
  for j = 1, #hashes do
    local key, ttl = hashes[j][1], hashes[j][2]
    for n = 1, #fields, 2 do
      local _, fresh = add(key, fields[n], fields[n + 1])
      if fresh and ttl ~= '0' then expiring[key] = ttl end
    end
  end
end
local pushed = {}  -- index list -> its new entries, pushed once per list
local list_keys = {}  -- an index list's number (text) -> its key
-- Only the call's last XADD caps the stream (approximately, as each did): the cap on every
-- one cost three more arguments a record, ~3.5k Redis instructions.
local last = #ARGV - 1
if not by_id then  -- records of the stream are those with no index list
  while last >= 10 and ARGV[last] ~= '0' do last = last - 2 end
end
for k = 10, #ARGV, 2 do
  local list = ARGV[k]
  local entry = ARGV[k + 1]
  if k == last then
    entry = redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'r', entry)
  elseif by_id or list == '0' then
    entry = redis.call('XADD', stream, '*', 'r', entry)
  end
  if list ~= '0' then
    local key = list_keys[list]
    if key == nil then
      key = KEYS[lists + list]
      list_keys[list] = key
    end
    local entries = pushed[key]
    if entries == nil then
      entries = {}
      pushed[key] = entries
    end
    entries[#entries + 1] = entry
  end
end
for key, entries in pairs(pushed) do
  if redis.call('RPUSH', key, unpack(entries)) == #entries then expiring[key] = index_ttl end
  trimmed[key] = true
end
-- The index keeps no more than the stream: its older ids would name trimmed entries. Trimmed
-- here, once per list per call, so each record costs O(1) amortised.
for key in pairs(trimmed) do redis.call('LTRIM', key, -maxlen, -1) end
for key, ttl in pairs(expiring) do redis.call('EXPIRE', key, ttl) end
return watched
