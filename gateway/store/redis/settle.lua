-- Settles a batch of finished requests in one call: on a standalone Redis the whole batch, on a
-- cluster the part of it in one hash slot.
-- KEYS: h hashes, then l lease pairs (sorted set, hash), then s (0 or 1) the usage stream, then
--   i per-user day index lists, then d (0 or 1) the once-only mark.
-- ARGV[2]: everything but the grants, packed by the gateway (settle_pack.py) for one
-- ``struct.unpack`` with the format ARGV[1] (matching text lines cost this script ~90
-- instructions a character and a number's conversion ~1.5k: half of a settle alone). In order:
--   the head: h, l, s, i, d, by_id (1: add each record to the stream and its entry id to its
--     index list; 0: the record itself to its index list only, a cluster's stream being in
--     another slot), then how many increments, shared writes, lease ends, marks to delete and
--     records follow, how many hashes (the first) are checked only if listed and how many
--     are listed, then the stream's MAXLEN (approximate, also the most entries an index list
--     keeps) as a number and as text, the mark's seconds and the index's seconds as text, then
--     the listed hashes' indexes (those an increment or a grant writes);
--   per increment 4 values: its hash's index, seconds to live when the hash is new (0: keep),
--     watch (1: its new value is returned), its field (the same for every request of a form:
--     ``settle_forms.py``); then the increments' deltas as numbers, then as text (for HINCRBY);
--   per write shared by several hashes (a level's window hashes, which count the same usage):
--     its first hash's index, its number of hashes (that many KEYS in turn, each in no other
--     write of the call), its number of fields, each hash's seconds, then per field its name,
--     its delta as a number and as text;
--   per lease to end: its pair's number, the number of its first grant in ARGV[3] and how
--     many, and its id (0, 0: give back what the lease holds, if it is still there; else the
--     grants are added back only if the lease is gone, the increments already subtracting
--     them: per grant its hash's index, seconds to live, amount as text, field);
--   per mark of an earlier batch to delete (its reply arrived) its name;
--   per usage record its index list's number (0 = none: stream only), then the record.
-- The gateway checks every number is within +-2^53 (exact here).
-- Returns {1, the new values of the watched fields in order (the cost-alert totals)}, or {0}
-- when the mark says this batch was already applied.
--
-- Cost: a command inside a script costs ~3-6k instructions, a Lua function call ~0.5-1.5k, so
-- each hash is checked with HLEN (a TYPE only names the culprit once one failed), the lease
-- hashes by the HMGET that reads them (before any write), marks go in one DEL, and an index list
-- is trimmed only once it is longer than the cap.
-- Globals read into locals once: a global is a table read by name, each use.
local KEYS, call, unpack = KEYS, redis.call, unpack
local v = {struct.unpack(ARGV[1], ARGV[2])}
if v[#v] ~= #ARGV[2] + 1 then
  error({err = 'ERR gateway: settle data of ' .. #ARGV[2] .. ' bytes, ' .. (v[#v] - 1) .. ' read'})
end
local h, l, s, i, d, by_id = v[1], v[2], v[3], v[4], v[5], v[6] == 1
local incs, shares, ends, forgets, records = v[7], v[8], v[9], v[10], v[11]
local formed, listed = v[12], v[13]
local maxlen, maxlen_text, mark_ttl, index_ttl = v[14], v[15], v[16], v[17]
if #KEYS ~= h + 2 * l + s + i + d or s > 1 or d > 1 then
  error({err = 'ERR gateway: ' .. #KEYS .. ' keys for the settle head'})
end
local stream = KEYS[h + 2 * l + 1]
local lists = h + 2 * l + s
local function malformed(what, at)
  error({err = 'ERR gateway: malformed ' .. what .. ' at value ' .. at})
end

-- The gateway built the indexes (settle_pack.py): only a blob that does not end where its
-- format does fails here, before any write (a check per value cost ~1k of Lua a request).
local first_inc = 18 + listed
local first_shared = first_inc + 6 * incs
local first_delta = first_inc + 4 * incs  -- then the texts, from first_delta + incs
local p = first_shared
for n = 1, shares do p = p + 3 + v[p + 1] + 3 * v[p + 2] end
-- Per lease pair: its lease ids, and per lease where its grants are (read only when needed).
local pair_ids, pair_ends = {}, {}
for n = 1, ends do
  local pair, id = v[p], v[p + 3]
  local ids = pair_ids[pair]
  if ids == nil then
    ids = {}
    pair_ids[pair] = ids
    pair_ends[pair] = {}
  end
  ids[#ids + 1] = id
  pair_ends[pair][#ids] = p + 1
  p = p + 4
end
local marks = {}
for n = 1, forgets do
  marks[n] = v[p]
  p = p + 1
end
local first_record = p
if p + 2 * records ~= #v then malformed('settle data', p) end

-- Each key's type, before any write: a read that fails on a key of another type.
local payloads = {}
local function check()
  -- the hashes written: of the first ``formed`` those listed, then every other
  for q = 18, 17 + listed do call('HLEN', KEYS[v[q]]) end
  for k = formed + 1, h do call('HLEN', KEYS[k]) end
  for k = 1, l do call('ZCARD', KEYS[h + 2 * k - 1]) end
  if s == 1 then call('XLEN', stream) end
  for k = 1, i do call('LLEN', KEYS[lists + k]) end
  for pair, ids in pairs(pair_ids) do
    payloads[pair] = call('HMGET', KEYS[h + 2 * pair], unpack(ids))
  end
end
local checked, failure = pcall(check)
if not checked then
  for q = 18, 17 + listed do expect(KEYS[v[q]], 'hash') end
  for k = formed + 1, h do expect(KEYS[k], 'hash') end
  for k = 1, l do
    expect(KEYS[h + 2 * k - 1], 'zset')
    expect(KEYS[h + 2 * k], 'hash')
  end
  if s == 1 then expect(stream, 'stream') end
  for k = 1, i do expect(KEYS[lists + k], 'list') end
  error(failure)
end

if forgets > 0 then call('DEL', unpack(marks)) end
if d == 1 and not call('SET', KEYS[#KEYS], '1', 'NX', 'EX', mark_ttl) then
  return {0}
end

local expiring = {}
-- ``add`` (common.lua) with the delta as text and as a number: no conversion per write.
local function add_packed(key, field, ttl, delta, text)
  local value = redis.pcall('HINCRBY', key, field, text)
  if value == delta then
    if ttl ~= 0 then expiring[key] = ttl end
  elseif type(value) == 'table' then
    value = delta
    if ttl ~= 0 then expiring[key] = ttl end
    call('HSET', key, field, text)
  end
  if value < 0 then
    call('HSET', key, field, '0')
    return 0
  end
  return value
end

-- One read (above), one delete and one removal per lease pair, whatever the number of leases.
for pair, ids in pairs(pair_ids) do
  local data = KEYS[h + 2 * pair]
  local got = payloads[pair]
  local places = pair_ends[pair]
  for n = 1, #ids do
    local at = places[n]
    local start, count = v[at], v[at + 1]
    if count == 0 then
      if got[n] then give_back(got[n]) end
    elseif not got[n] then  -- the sweeper gave it back
      local g = {struct.unpack('<' .. string.rep('i4I4i4c0i4c0', start - 1 + count), ARGV[3])}
      for q = 4 * start - 3, 4 * (start - 1 + count), 4 do
        add_packed(KEYS[g[q]], g[q + 3], g[q + 1], g[q + 2] + 0, g[q + 2])
      end
    end
  end
  call('HDEL', data, unpack(ids))
  call('ZREM', KEYS[h + 2 * pair - 1], unpack(ids))
end
local watched = {1}
-- A time to live only for a hash that may be new: every writer gives one it creates its own.
-- ``add_packed`` inlined, and by ``redis.call``: a field holding no integer (or one that would
-- overflow) fails its HINCRBY, and ``replace`` writes that one and goes on after it (a type
-- check and a function call per write cost ~1k, a sixth of a HINCRBY).
local done = 0  -- increments written
local function increments()
  local d = first_delta + done
  for q = first_inc + 4 * done, first_inc + 4 * (incs - 1), 4 do
    local key, delta = KEYS[v[q]], v[d]
    local value = call('HINCRBY', key, v[q + 3], v[d + incs])
    if value == delta and v[q + 1] ~= 0 then expiring[key] = v[q + 1] end
    if value < 0 then
      call('HSET', key, v[q + 3], '0')
      value = 0
    end
    if v[q + 2] == 1 then watched[#watched + 1] = value end
    done = done + 1
    d = d + 1
  end
end
while not pcall(increments) do
  local q, d = first_inc + 4 * done, first_delta + done
  local key, ttl, delta = KEYS[v[q]], v[q + 1], v[d]
  call('HSET', key, v[q + 3], delta < 0 and '0' or v[d + incs])
  if ttl ~= 0 then expiring[key] = ttl end
  if v[q + 2] == 1 then watched[#watched + 1] = delta < 0 and 0 or delta end
  done = done + 1
end
p = first_shared
for n = 1, shares do
  local k, count, fields = v[p], v[p + 1], v[p + 2]
  local at = p + 3 + count
  for j = 0, count - 1 do
    local key, ttl = KEYS[k + j], v[p + 3 + j]
    for f = at, at + 3 * fields - 1, 3 do
      add_packed(key, v[f], ttl, v[f + 1], v[f + 2])
    end
  end
  p = at + 3 * fields
end
local pushed = {}  -- index list -> its new entries, pushed once per list
-- Only the call's last XADD caps the stream (approximately, as each did): the cap on every
-- one cost three more arguments a record, ~3.5k Redis instructions.
local last = first_record + 2 * (records - 1)
if not by_id then  -- records of the stream are those with no index list
  while last >= first_record and v[last] ~= 0 do last = last - 2 end
end
p = first_record
for n = 1, records do
  local list, entry = v[p], v[p + 1]
  if p == last then
    entry = call('XADD', stream, 'MAXLEN', '~', maxlen_text, '*', 'r', entry)
  elseif by_id or list == 0 then
    entry = call('XADD', stream, '*', 'r', entry)
  end
  if list ~= 0 then
    local entries = pushed[list]
    if entries == nil then
      entries = {}
      pushed[list] = entries
    end
    entries[#entries + 1] = entry
  end
  p = p + 2
end
-- The index keeps no more than the stream: its older ids would name trimmed entries. Trimmed
-- here, once per list per call and only once longer than that, so each record costs O(1).
for list, entries in pairs(pushed) do
  local key = KEYS[lists + list]
  local size = call('RPUSH', key, unpack(entries))
  if size == #entries then expiring[key] = index_ttl end
  if size > maxlen then call('LTRIM', key, -maxlen, -1) end
end
for key, ttl in pairs(expiring) do call('EXPIRE', key, ttl) end
return watched
