-- Atomic reservations: the rule of gateway/store/rule.py, inside Redis, and their leases. One
-- call holds one reservation, or several (those a gateway process queued in one turn of its
-- event loop: group commit), applied one after another exactly as separate calls would be:
-- each sees the counters as the ones before it left them, and one refused writes nothing.
-- Each hash is read once and written once per call, whatever the number of reservations.
--
-- KEYS: every key the reservations name, once each.
-- A layout is what every reservation of one plan sends alike (its ``CounterLayout``), packed
-- by the gateway (reserve_pack.py) for ``struct.unpack``: one C call reads it all, where
-- matching text cost ~90 instructions a character and converting a number ~900 (a plain
-- reservation's lines were ~100k). In order: m, the number of counter hashes; has_override
-- (1: the user's override hash follows them in KEYS); registry (1: the lease registry's key is
-- given); the lease seconds; the m TTLs, one per hash: seconds to set when the hash is new
-- (none of its counters held a value), minus seconds to set on every call (a sliding time to
-- live), 0 = keep; then per counter 4 values: key index, field, limit, cap. Apart, its
-- fields' names: per counter its limit override field and cap override field ('' = none),
-- unpacked only when the override hash holds a value (most users have none). Amounts: per
-- counter its fixed and flex amounts (flex 0: none). The gateway checks every number is
-- within +-2^53 (exact here).
-- Two forms of ARGV. A reservation alone (ARGV[2] == ''), 6 values: 1: 1; 2: ''; 3: the
-- struct format of 4; 4: its layout and then its amounts; 5: the lease id ('' = none); 6:
-- its override fields' names.
-- The group's form: ARGV[1]: n, the number of reservations; ARGV[2]: l, the number of
-- layouts, each sent once per call however many reservations share it, and read once per
-- call; a reservation sends its amounts alone. Then 3 values per layout: its struct format,
-- its data and its override fields' names. Then 4 values per reservation:
--   1: where its keys are in KEYS ('' = KEYS as they are; else comma-separated indexes), in
--      the order of one reservation's keys: 1..m the counter hashes; m+1 the user's override
--      hash (when has_override); then, with a lease, its sorted set (lease id -> deadline)
--      and hash (lease id -> amounts): ONE group holds the whole reservation, whatever the
--      slots of its counters; then the lease registry (when registry);
--   2: its layout's number (1..l); 3: the lease id ('' = none);
--   4: its amounts, packed (struct format '<' and 'i8' twice per counter).
-- (Packed into few arguments because encoding ~60 separate arguments was the client's biggest
-- cost per request, and each costs Redis ~1.3k instructions.)
-- Returns per reservation {denied (1-based, 0 = granted), then per counter its used value, then
-- (counter's number, effective limit, grant) for each counter whose effective limit is not the
-- limit sent or whose grant is not its fixed + flex amount}: the gateway knows the rest, and
-- every number returned cost ~1k instructions. That array alone for one reservation; for
-- several, one array holding per reservation its number of values and then them (an array per
-- reservation cost Redis ~5k more to send and ~3k to make: ``reserve.split_replies``).
--
-- Cost: every Lua function call (``tonumber`` and ``string.*`` included) costs a good part of
-- a Redis command inside a script, and a table read or write ~110 instructions: the rule is
-- inlined, and each hash is read with one HMGET (an HGET for one field alone: a string, not a
-- table, ~1.7k less) and written with one HSET (the script is atomic: the new values are
-- known). No TYPE checks: the reads fail on a counter key of another type before any write, and the leases' writes come first, each undone if a later one
-- fails. Any error fails the whole call with nothing written (the gateway then sends the
-- reservations of a failed group one by one, so each gets its own answer).
--
-- Two paths: most calls hold ONE reservation (at low load nothing else is queued in its turn),
-- sent alone (the first form: its layout read once either way, so in one pass with its amounts),
-- and the group's bookkeeping (one read per (key, field) across reservations, tables of width
-- #KEYS, lease groups) cost such a call ~20% more than the script before group commit. So one
-- reservation takes a path of its own: no dedupe (HMGET reads a field named twice twice, and
-- the grants are summed per field when written), only the grants written, tables made at their
-- full size once (a table grown entry by entry is rehashed at every power of two, ~500
-- instructions each), and when each key's counters are adjacent (as the gateway lays them
-- out) no table per key either. Both apply rule.lua, inlined here at each ``-- <rule>`` by scripts.py
-- (a Lua function call per counter cost ~1.5k instructions more).
-- Globals read into locals once: a global is a table read by name, each use.
local KEYS, ARGV, unpack = KEYS, ARGV, unpack
local call, rpcall = redis.call, redis.pcall
local format, concat, unpack_struct = string.format, table.concat, struct.unpack
local n = ARGV[1] + 0
local none = {}  -- unpack(none, 1, k): k nils, so a table is made at its full size at once
-- A table with room for k entries at 1..k, made at its full size at once (a table grown entry by
-- entry is rehashed at every power of two, ~1k instructions each): for the few entries most
-- hold, by a constructor of nils (``unpack``, a C call, costs more than the rehash it saves).
local function sized(k)
  if k <= 8 then return {nil, nil, nil, nil, nil, nil, nil, nil} end
  return {unpack(none, 1, k)}
end

-- The override fields' names of ``count`` counters: {limit field, cap field, ...}.
local function fields_of(data, count)
  local names = {struct.unpack('<' .. string.rep('i4c0i4c0', count), data)}
  if names[2 * count + 1] ~= #data + 1 then
    error({err = 'ERR gateway: override fields of ' .. #data .. ' bytes for ' .. count .. ' counters'})
  end
  return names
end

if ARGV[2] == '' then
  -- One reservation alone ("Two paths" above), its layout and amounts in one argument.
  if n ~= 1 or #ARGV ~= 6 then
    error({err = 'ERR gateway: ' .. #ARGV .. ' arguments for one reservation alone'})
  end
  local data = ARGV[4]
  -- {m, has_override, registry, lease seconds, the m TTLs, per counter its 4 values (key
  -- index, field, limit, cap), per counter its fixed and flex amounts, where the data ended}
  local lay = {struct.unpack(ARGV[3], data)}
  local size = #lay
  local m = lay[1]
  local first = 5 + m  -- the first counter's first value
  local count = (size - first) / 6
  if lay[size] ~= #data + 1 or count % 1 ~= 0 then
    error({err = 'ERR gateway: a layout of ' .. (size - 1) .. ' values'})
  end
  local amounts = first + 4 * count - 2  -- counter i's fixed amount: lay[amounts + 2 * i]
  local found = false
  if lay[2] == 1 then
    local flat = call('HGETALL', KEYS[m + 1])
    -- an unparsable override is ignored, as on the read path
    for i = 1, #flat, 2 do
      if is_int(flat[i + 1]) then
        found = found or {}
        found[flat[i]] = tonumber(flat[i + 1])
      end
    end
  end
  local names = found and fields_of(ARGV[6], count)
  -- Per counter what its hash held (false: nothing). As the gateway lays them out, each key's
  -- counters are adjacent, in key order, and name no field twice: then a key's counters are a
  -- run (starts[key] .. starts[key + 1] - 1), read with one HMGET (HGET for one field: no
  -- reply table) and written with one HSET, and no table per key is made. Else (``runs``
  -- false) per key the fields it reads (a field named twice read twice) in ``hashes``.
  local read = sized(count)
  local starts = sized(m + 1)
  local runs = true
  local key = 0
  for i = 1, count do
    local b = first + 4 * i - 4
    local at = lay[b]
    if at ~= key then
      if at ~= key + 1 then
        runs = false
        break
      end
      key = at
      starts[key] = i
    else
      local field = lay[b + 1]
      for j = starts[key], i - 1 do
        if lay[first + 4 * j - 3] == field then runs = false end
      end
      if not runs then break end
    end
  end
  local hashes = nil
  local fresh = false  -- a hash none of whose counters held a value (it may be new)
  if runs and key == m then
    starts[m + 1] = count + 1
    for key = 1, m do
      local s, e = starts[key], starts[key + 1] - 1
      local b = first + 4 * s - 3  -- counter s's field
      if s == e then
        local value = call('HGET', KEYS[key], lay[b])
        read[s] = value
        fresh = fresh or not value
      else
        local got
        if e - s == 1 then
          got = call('HMGET', KEYS[key], lay[b], lay[b + 4])
        elseif e - s == 2 then
          got = call('HMGET', KEYS[key], lay[b], lay[b + 4], lay[b + 8])
        else
          local fields = sized(e - s + 1)
          for i = s, e do fields[i - s + 1] = lay[first + 4 * i - 3] end
          got = call('HMGET', KEYS[key], unpack(fields, 1, e - s + 1))
        end
        local held = false
        for i = s, e do
          local value = got[i - s + 1]
          read[i] = value
          held = held or value
        end
        fresh = fresh or not held
      end
    end
  else
    runs = false
    -- key -> the fields its HMGET reads, then what it read; made with room for eight keys (a
    -- plain key's KEYS; a call to unpack costs more), false: none
    hashes = {false, false, false, false, false, false, false, false}
    local places = sized(count)  -- per counter its value's place in its HMGET
    for i = 1, count do
      local b = first + 4 * i - 4
      local key = lay[b]
      local fields = hashes[key]
      if not fields then
        if key < 1 or key > m or key % 1 ~= 0 then error({err = 'ERR gateway: no key ' .. key}) end
        hashes[key] = {lay[b + 1], nil, nil, nil}  -- room for four (see ``sized``)
        places[i] = 1
      else
        local at = #fields + 1
        fields[at] = lay[b + 1]
        places[i] = at
      end
    end
    for key = 1, m do
      local fields = hashes[key]
      if not fields then
      elseif #fields == 1 then  -- one field (most hashes) named in the call: no ``unpack``
        hashes[key] = call('HMGET', KEYS[key], fields[1])
      else
        hashes[key] = call('HMGET', KEYS[key], unpack(fields))
      end
    end
    for i = 1, count do read[i] = hashes[lay[first + 4 * i - 4]][places[i]] end
    for key = 1, m do
      local stored = hashes[key] or none
      local held = false
      for i = 1, #stored do held = held or stored[i] end
      fresh = fresh or not held
    end
  end

  local out = sized(count + 1)  -- the reply (see the top), its exceptions appended
  local grants = sized(count)
  local denied = 0
  local last = count + 1
  for i = 1, count do
    local b = first + 4 * i - 4
    local value = read[i]
    local used = 0
    if value then
      used = value + 0  -- as the group's read below
      if used % 1 ~= 0 or used > 9007199254740992 or used < -9007199254740992 then
        error({err = 'ERR gateway: not an integer in range: ' .. value})
      end
    end
    local fixed, flex = lay[amounts + 2 * i], lay[amounts + 2 * i + 1]
    local sent = lay[b + 2]  -- its limit as sent (read once: each read is ~250 instructions)
    -- <rule>
    if amount == nil then
      if denied == 0 then denied = i end
      amount = 0
    end
    out[i + 1] = used
    grants[i] = amount
    if limit ~= sent or amount ~= asked then
      out[last + 1] = i
      out[last + 2] = limit
      out[last + 3] = amount
      last = last + 3
    end
  end
  out[1] = denied
  if denied ~= 0 then return out end

  -- The lease's lines, joined once, and (not ``runs``) the new values per hash: a field named
  -- twice gets both grants, as two HINCRBYs would.
  -- key -> {field, value, field, value, ...}, made as ``hashes``
  local totals = not runs and {false, false, false, false, false, false, false, false}
  local lines = sized(count)
  local held = 0
  local lease = ARGV[5]
  -- the last three amounts formatted and their texts, each ending its line (a table of them,
  -- keyed by amount, cost more: each new key grows it)
  local a1, t1, a2, t2, a3, t3 = nil, nil, nil, nil, nil, nil
  for i = 1, count do
    local amount = grants[i]
    if amount ~= 0 then
      local b = first + 4 * i - 4
      local key, field = lay[b], lay[b + 1]
      local pairs_of = totals and totals[key]
      if not totals then
      elseif not pairs_of then
        totals[key] = {field, out[i + 1] + amount, nil, nil, nil, nil}  -- room for three
      else
        local named = nil
        for j = 1, #pairs_of, 2 do
          if pairs_of[j] == field then named = j end
        end
        if named then
          pairs_of[named + 1] = pairs_of[named + 1] + amount
        else
          pairs_of[#pairs_of + 1] = field
          pairs_of[#pairs_of + 1] = out[i + 1] + amount
        end
      end
      if lease ~= '' then
        local shown = t1
        if amount == a2 then shown = t2 elseif amount == a3 then shown = t3
        elseif amount ~= a1 then
          shown = format('%d\n', amount)  -- its line's end (exact: tostring keeps 14)
          a1, t1, a2, t2, a3, t3 = amount, shown, a1, t1, a2, t2
        end
        held = held + 1
        lines[held] = KEYS[key] .. '\t' .. field .. '\t' .. shown
      end
    end
  end
  -- The times to live are due (before any write) only for a sliding one (negative), or a new
  -- hash's (``fresh``); most calls have neither.
  local due = fresh
  for key = 1, m do
    if lay[4 + key] < 0 then due = true end
  end
  -- The lease first: a key of the wrong type fails the call here, with what was written undone.
  if held > 0 then
    -- as text: a number given to a command is formatted by Redis, here it is once for two
    local deadline = format('%d', call('TIME')[1] + lay[4])
    local base = m
    if lay[2] == 1 then base = m + 1 end
    local zset, data = KEYS[base + 1], KEYS[base + 2]
    local done = rpcall('ZADD', zset, deadline, lease)
    if type(done) == 'table' and done.err then error(done) end
    done = rpcall('HSET', data, lease, concat(lines, '', 1, held))
    if type(done) == 'table' and done.err then
      call('ZREM', zset, lease)
      error(done)
    end
    if lay[3] == 1 then
      done = rpcall('ZADD', KEYS[base + 3], 'LT', deadline, zset)
      if type(done) == 'table' and done.err then
        call('HDEL', data, lease)
        call('ZREM', zset, lease)
        error(done)
      end
    end
  end
  -- The values as text: a number given to a command is formatted by Redis ('%.17g', ~2.7k
  -- instructions), ~1k more than ``format('%d')`` (exact within +-2^63).
  if runs then
    local pairs_of = {nil, nil, nil, nil, nil, nil, nil, nil}  -- reused: a key's fields granted
    for key = 1, m do
      local h = 0
      for i = starts[key], starts[key + 1] - 1 do
        local amount = grants[i]
        if amount ~= 0 then
          pairs_of[h + 1] = lay[first + 4 * i - 3]
          pairs_of[h + 2] = format('%d', out[i + 1] + amount)
          h = h + 2
        end
      end
      if h == 2 then  -- one field (most hashes): no ``unpack``
        call('HSET', KEYS[key], pairs_of[1], pairs_of[2])
      elseif h > 0 then
        call('HSET', KEYS[key], unpack(pairs_of, 1, h))
      end
    end
  end
  for key = 1, totals and m or 0 do  -- one field (most hashes) named in the call, as the group's
    local pairs_of = totals[key]
    if not pairs_of then
    elseif #pairs_of == 2 then
      call('HSET', KEYS[key], pairs_of[1], format('%d', pairs_of[2]))
    else
      for j = 2, #pairs_of, 2 do pairs_of[j] = format('%d', pairs_of[j]) end
      call('HSET', KEYS[key], unpack(pairs_of))
    end
  end
  for key = 1, due and m or 0 do
    local ttl = lay[4 + key]
    if ttl < 0 then  -- a sliding time to live
      call('EXPIRE', KEYS[key], -ttl)
    elseif ttl ~= 0 then  -- when none of its counters held a value (a new hash)
      local existed = false
      if runs then
        for i = starts[key], starts[key + 1] - 1 do existed = existed or read[i] end
      else
        local stored = hashes[key] or none
        for i = 1, #stored do existed = existed or stored[i] end
      end
      if not existed then call('EXPIRE', KEYS[key], ttl) end
    end
  end
  return out
end

-- Several reservations (group commit), or one in the group's form.
local l = ARGV[2] + 0
if n < 1 or l < 1 or #ARGV ~= 2 + 3 * l + 4 * n then
  error({err = 'ERR gateway: ' .. #ARGV .. ' arguments for ' .. n .. ' reservations and '
               .. l .. ' layouts'})
end
local first = 3 + 3 * l  -- the first reservation's first argument
-- text -> number, each converted once per call: the key indexes of the group's argument 1
local numbers = {}
-- The layout whose 3 arguments start at ARGV[at] (its struct format, data and override
-- fields' names: the alone form's without the amounts): {m, has_override, registry, lease
-- seconds, the unpacked values (lay: the m TTLs from lay[5], each counter's 4 values from
-- lay[first]), first, the counters' count, (8: per where's text, resolved below), the
-- amounts' struct format, whether a TTL slides (only those are negative), (11: the override
-- fields' names, once a reservation's override hash holds a value), where its names are}.
local function layout_at(at)
  local data = ARGV[at + 1]
  local lay = {struct.unpack(ARGV[at], data)}
  local size = #lay
  local m = lay[1]
  local first = 5 + m
  local count = (size - first) / 4
  if lay[size] ~= #data + 1 or count % 1 ~= 0 then
    error({err = 'ERR gateway: a layout of ' .. (size - 1) .. ' values'})
  end
  for i = 1, count do
    local key = lay[first + 4 * i - 4]
    if key < 1 or key > m or key % 1 ~= 0 then error({err = 'ERR gateway: no key ' .. key}) end
  end
  local sliding = false
  for j = 1, m do sliding = sliding or lay[4 + j] < 0 end
  return {m, lay[2] == 1, lay[3] == 1, lay[4], lay, first, count, nil,
          '<' .. string.rep('i8', 2 * count), sliding, false, at + 2}
end

-- Tables indexed by key (its index in KEYS) are made at their full size at once: a table grown
-- entry by entry is rehashed at every power of two. false: the key has none.
local width = #KEYS
local blank = {}
for key = 1, width do blank[key] = false end
local function blanks()  -- as ``sized``
  if width <= 8 then return {false, false, false, false, false, false, false, false} end
  return {unpack(blank)}
end
local fields = blanks()  -- key -> the fields its HMGET reads
-- key -> where its fields' values are in ``vals`` (one place per (key, field) in the call, so
-- a counter's value is one read away), as ``fields``
local slots = blanks()
local taken = 0  -- places in ``vals``
local overrides = {}  -- override hash's key -> {field -> number}, or false: none readable
local plans = sized(n)  -- per reservation: {layout, its counters' keys and places, amounts, its
--   keys, first argument, override hash's numbers}
-- Reservations of one user in a call send the same argument 1 (where its keys are): read once.
local read_where = {}
-- Layouts, each read once per call: its number's text -> {layout_at's 7 values, then where's
-- text -> its counters' keys and places in KEYS' HMGETs}
local layouts = {}
-- place in ``vals`` -> the last reservation that resolved a counter to it (room for 32: see
-- ``sized``)
local seen = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
              nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
local due = false  -- a time to live to set: a layout's slides, or a hash is new (below)

-- A counter's place in ``vals``, found by looking through the few fields of its hash named
-- before (a table per hash of field -> place cost more: a table grown entry by entry is
-- rehashed).
local function counter_of(key, field)
  local names = fields[key]
  taken = taken + 1
  if not names then  -- made with its first entry: one growth less
    if KEYS[key] == nil then error({err = 'ERR gateway: no key ' .. key}) end
    fields[key] = {field, nil, nil, nil}
    slots[key] = {taken, nil, nil, nil}
    return taken
  end
  local size = #names
  for at = 1, size do
    if names[at] == field then
      taken = taken - 1
      return slots[key][at]
    end
  end
  names[size + 1] = field
  slots[key][size + 1] = taken
  return taken
end

for r = 1, n do
  local a = first + (r - 1) * 4
  local where = nil  -- its key index -> the index in KEYS (read-only: shared)
  if ARGV[a] ~= '' then
    where = read_where[ARGV[a]]
    if where == nil then
      where = {}
      for index in string.gmatch(ARGV[a], '%d+') do
        local at = numbers[index]
        if at == nil then
          at = index + 0
          numbers[index] = at
        end
        where[#where + 1] = at
      end
      read_where[ARGV[a]] = where
    end
  end
  local layout = layouts[ARGV[a + 1]]
  if layout == nil then
    local number = ARGV[a + 1] + 0
    if number < 1 or number > l or number % 1 ~= 0 then
      error({err = 'ERR gateway: no layout ' .. ARGV[a + 1]})
    end
    layout = layout_at(3 + 3 * (number - 1))
    layout[8] = {}
    layouts[ARGV[a + 1]] = layout
    due = due or layout[10]
  end
  local lay, at, count = layout[5], layout[6], layout[7]
  -- its counters' keys in KEYS and places in ``vals``: the same for every reservation of one
  -- layout and user
  local resolved = layout[8][ARGV[a]]
  if resolved == nil then
    local keys_of, places = sized(count), sized(count)
    local alias = false  -- a (key, field) named twice in it (the gateway names none twice)
    for i = 1, count do
      local key = lay[at]
      if where then key = where[key] or 0 end
      keys_of[i] = key
      local place = counter_of(key, lay[at + 1])
      places[i] = place
      if seen[place] == r then alias = true end
      seen[place] = r
      at = at + 4
    end
    resolved = {keys_of, places, nil, alias}
    layout[8][ARGV[a]] = resolved
  end
  local m = layout[1]
  local override = nil
  if layout[2] then
    override = where and where[m + 1] or m + 1
    if overrides[override] == nil then
      local found = false
      local flat = call('HGETALL', KEYS[override])
      -- an unparsable override is ignored, as on the read path
      for i = 1, #flat, 2 do
        if is_int(flat[i + 1]) then
          found = found or {}
          found[flat[i]] = tonumber(flat[i + 1])
        end
      end
      overrides[override] = found
    end
  end
  local found = override and overrides[override]
  if found and not layout[11] then layout[11] = fields_of(ARGV[layout[12]], layout[7]) end
  -- its amounts (argument 4) for its layout's counters: {fixed, flex, fixed, flex, ...}, then
  -- where its data ended
  local data = ARGV[a + 3]
  local amounts = {unpack_struct(layout[9], data)}
  if amounts[2 * count + 1] ~= #data + 1 then
    error({err = 'ERR gateway: amounts of ' .. #data .. ' bytes for ' .. count .. ' counters'})
  end
  plans[r] = {layout, resolved, amounts, where, a, found}
end

-- The stored values, each hash read once: per (key, field) its value, or false: none.
local vals = sized(taken)
local read = sized(taken)  -- per place its value as read: a hash whose values moved is written
local existed = blanks()  -- key -> true when one of its read counters held a value
for key = 1, width do
  local names = fields[key]
  if names then
    local stored  -- one field (most hashes) named in the call: no ``unpack``
    if #names == 1 then
      stored = call('HMGET', KEYS[key], names[1])
    else
      stored = call('HMGET', KEYS[key], unpack(names))
    end
    local places = slots[key]
    for i = 1, #names do
      local value = stored[i]
      vals[places[i]] = value
      read[places[i]] = value
      if value then
        -- inlined (a call per value costs more than the check): an integer within +-2^53
        -- (``+ 0``, not ``tonumber``: a third of the cost; no number at all: a runtime error)
        local used = value + 0
        if used % 1 ~= 0 or used > 9007199254740992 or used < -9007199254740992 then
          error({err = 'ERR gateway: not an integer in range: ' .. value})
        end
        vals[places[i]] = used
        read[places[i]] = used
        existed[key] = true
      end
    end
    due = due or not existed[key]
  end
end

-- The rule, reservation after reservation; a granted one moves the values for the next.
-- the replies (see the top), made with room for 32 values (nils: see ``sized``)
local flat = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
              nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil}
local ended = 0  -- where the last one ended in ``flat``
local expiring = blanks()  -- key -> its TTL (the last granted reservation's)
local groups = {}  -- lease sorted set's key -> {hash's key, registry's key or nil, ZADD members, HSET pairs}
local group_order = {}
local now = nil
local deadlines = {}  -- lease seconds' text -> {deadline, its text}
-- a lease's lines in parts, joined once (see below), made with room for 24 (as ``flat``)
local parts = {nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil,
               nil, nil, nil, nil, nil, nil, nil, nil}
-- the last three amounts formatted and their texts, as in the path for one
local a1, t1, a2, t2, a3, t3 = nil, nil, nil, nil, nil, nil
local grants = sized(8)  -- a reservation's grants, per counter (reused: each writes its own first)
local olds = sized(8)  -- per counter moved, its value before the move (reused as ``grants``)
local expired = nil  -- the last reservation whose keys' TTLs are in ``expiring``: its resolved
for r = 1, n do
  local plan = plans[r]
  local layout, resolved, amounts, where, a, found = plan[1], plan[2], plan[3], plan[4], plan[5],
                                                     plan[6]
  local lay, first, count, names = layout[5], layout[6], layout[7], layout[11]
  local keys_of, places, alias = resolved[1], resolved[2], resolved[4]
  local start = ended + 1  -- flat[start]: its number of values; then its reply
  flat[start] = 0
  flat[start + 1] = 0
  -- The lease's lines are joined from ``parts`` (reused): each counter's "key\tfield\t",
  -- made once per call for a layout and user, and its grant's text with the newline; a line
  -- made on its own is one more string to allocate and hash.
  local held = 0
  local lease = ARGV[a + 2]
  local prefixes = lease ~= '' and resolved[3]
  if prefixes == nil then
    prefixes = sized(count)
    for i = 1, count do
      prefixes[i] = KEYS[keys_of[i]] .. '\t' .. lay[first + 4 * i - 3] .. '\t'
    end
    resolved[3] = prefixes
  end
  -- Each counter's rule sees the values as before the reservation: with a field named twice,
  -- those values as they were (``view``).
  local view = vals
  if alias then
    view = {}
    for i = 1, count do view[places[i]] = vals[places[i]] end
  end
  local denied = 0
  local last = start + count + 1
  local b, reply = first - 4, start + 1  -- (added to, not multiplied: each operation counts)
  for i = 1, count do
    b = b + 4
    local at = places[i]
    local value = view[at]
    local used = value or 0
    local two = i + i
    local fixed, flex = amounts[two - 1], amounts[two]
    local sent = lay[b + 2]  -- as the path for one
    -- <rule>
    if amount == nil then
      if denied == 0 then denied = i end
      amount = 0
    end
    flat[reply + i] = used
    grants[i] = amount
    if limit ~= sent or amount ~= asked then
      flat[last + 1] = i
      flat[last + 2] = limit
      flat[last + 3] = amount
      last = last + 3
    end
    -- The grant moves the value at once (undone below if a later counter refuses: a loop of
    -- its own over the grants cost ~0.5k instructions a counter more), and the lease's line is
    -- gathered in a table, joined once: a string grown line by line is copied and hashed
    -- again for every line, and a team key has some forty.
    if amount ~= 0 and denied == 0 then
      if alias then  -- a field named twice gets both grants, as two HINCRBYs would
        value = vals[at]
        used = value or 0
      end
      olds[i] = value
      vals[at] = used + amount
      if prefixes then
        local shown = t1
        if amount == a2 then shown = t2 elseif amount == a3 then shown = t3
        elseif amount ~= a1 then
          shown = format('%d\n', amount)  -- its line's end (exact: tostring keeps 14)
          a1, t1, a2, t2, a3, t3 = amount, shown, a1, t1, a2, t2
        end
        parts[held + 1] = prefixes[i]
        parts[held + 2] = shown
        held = held + 2
      end
    end
  end
  flat[start] = last - start
  flat[start + 1] = denied
  ended = last
  if denied ~= 0 then  -- refused: its grants before the refusal undone, last first
    for i = denied - 1, 1, -1 do
      if grants[i] ~= 0 then vals[places[i]] = olds[i] end
    end
  else
    local m = layout[1]
    if due and resolved ~= expired then  -- (the same keys and TTLs as the last: set already)
      for j = 1, m do expiring[where and where[j] or j] = lay[4 + j] end
      expired = resolved
    end
    if held > 0 then
      -- per lease seconds, the deadline as a number and as text, once per call: a number
      -- given to ZADD is formatted by Redis (~2.8k instructions), a text is not
      local due = deadlines[layout[4]]
      if due == nil then
        now = now or tonumber(call('TIME')[1])
        local at = now + layout[4]
        due = {at, format('%d', at)}  -- exact (tostring keeps 14 digits)
        deadlines[layout[4]] = due
      end
      local deadline = due[1]
      local base = m
      if layout[2] then base = m + 1 end
      local zset = where and where[base + 1] or base + 1
      local group = groups[zset]
      if group == nil then
        local registry = nil
        if layout[3] then registry = where and where[base + 3] or base + 3 end
        group = {where and where[base + 2] or base + 2, registry, sized(8), sized(8), deadline}
        groups[zset] = group
        group_order[#group_order + 1] = zset
      elseif layout[3] and group[2] == nil then
        group[2] = where and where[base + 3] or base + 3
      end
      local members, pairs_of = group[3], group[4]
      local size = #members  -- as long as pairs_of
      members[size + 1] = due[2]
      members[size + 2] = lease
      pairs_of[size + 1] = lease
      pairs_of[size + 2] = concat(parts, '', 1, held)
      if deadline < group[5] then group[5] = deadline end
    end
  end
end

-- The leases first: a key of the wrong type fails the call here, with what was written undone.
local written = 0  -- the groups (in group_order) whose leases are in
local function undo()
  for g = written, 1, -1 do
    local group = groups[group_order[g]]
    local ids = {}
    for j = 2, #group[3], 2 do ids[#ids + 1] = group[3][j] end
    call('HDEL', KEYS[group[1]], unpack(ids))
    call('ZREM', KEYS[group_order[g]], unpack(ids))
  end
end
-- (numeric loops: ``ipairs`` calls into C for every step)
local zsets = #group_order
for g = 1, zsets do
  local zset = group_order[g]
  local group = groups[zset]
  local done = rpcall('ZADD', KEYS[zset], unpack(group[3]))
  if type(done) == 'table' and done.err then undo() error(done) end
  done = rpcall('HSET', KEYS[group[1]], unpack(group[4]))
  if type(done) == 'table' and done.err then
    local ids = {}
    for j = 2, #group[3], 2 do ids[#ids + 1] = group[3][j] end
    call('ZREM', KEYS[zset], unpack(ids))
    undo()
    error(done)
  end
  written = g
end
if zsets == 1 then  -- one lease group (most calls): its registry entry without the tables below
  local group = groups[group_order[1]]
  if group[2] then
    local done = rpcall('ZADD', KEYS[group[2]], 'LT', group[5], KEYS[group_order[1]])
    if type(done) == 'table' and done.err then undo() error(done) end
  end
else
  local registered = {}  -- registry's key -> {deadline, lease sorted set's name, ...}
  local registry_order = {}
  for g = 1, zsets do
    local zset = group_order[g]
    local group = groups[zset]
    if group[2] then
      local entries = registered[group[2]]
      if entries == nil then
        entries = {'LT', nil, nil, nil}
        registered[group[2]] = entries
        registry_order[#registry_order + 1] = group[2]
      end
      entries[#entries + 1] = group[5]
      entries[#entries + 1] = KEYS[zset]
    end
  end
  for g = 1, #registry_order do
    local registry = registry_order[g]
    local done = rpcall('ZADD', KEYS[registry], unpack(registered[registry]))
    if type(done) == 'table' and done.err then undo() error(done) end
  end
end
-- (Their values as text, as in the path for one.)
-- Up to three fields, all holding a value (most hashes), are named in the call: a table and
-- an ``unpack`` cost more than the command's other work.
for key = 1, width do
  local names, places = fields[key], slots[key]
  local size = names and #names or 0
  local changed = false  -- a value moved (written: the unmoved ones as read)
  for at = 1, size do
    local place = places[at]
    if vals[place] ~= read[place] then changed = true end
  end
  if changed then
    local v1, v2, v3 = vals[places[1]], size > 1 and vals[places[2]], size > 2 and vals[places[3]]
    if size == 1 then
      call('HSET', KEYS[key], names[1], format('%d', v1))
    elseif size == 2 and v1 and v2 then
      call('HSET', KEYS[key], names[1], format('%d', v1), names[2], format('%d', v2))
    elseif size == 3 and v1 and v2 and v3 then
      call('HSET', KEYS[key], names[1], format('%d', v1), names[2], format('%d', v2),
           names[3], format('%d', v3))
    else
      local pairs_of, count = {}, 0
      for at = 1, size do
        local value = vals[places[at]]
        if value then
          pairs_of[count + 1] = names[at]
          pairs_of[count + 2] = format('%d', value)
          count = count + 2
        end
      end
      call('HSET', KEYS[key], unpack(pairs_of))
    end
  end
end
-- Every writer of a counter hash gives it its time to live when creating it, so a hash that
-- held a value already has one (when all did and none slides, none is due).
for key = 1, due and width or 0 do
  local ttl = expiring[key]
  if not ttl then  -- no granted reservation names it
  elseif ttl < 0 then  -- a sliding time to live
    call('EXPIRE', KEYS[key], -ttl)
  elseif ttl ~= 0 and not existed[key] then
    call('EXPIRE', KEYS[key], ttl)
  end
end
if n == 1 then return {unpack(flat, 2, ended)} end
return flat
