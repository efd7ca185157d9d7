-- The rule of gateway/store/rule.py for one counter, in Lua: written once here and inlined by
-- scripts.py where reserve.lua has a line ``-- <rule>`` (as a Lua function it cost ~1.5k more
-- Redis instructions per counter). Reads ``v`` (the counter's layout: {key, field, limit,
-- limit override field, cap, cap override field, ...}, limit and cap numbers), ``given`` and
-- ``extra`` (its fixed and flex amounts as the gateway wrote them; flex '' or '0': none),
-- ``used`` (its value before the reservation), ``found`` (the override hash's numbers, or
-- false) and ``numbers`` (the call's converted numbers: text -> number); sets ``limit`` (the
-- effective one), ``amount`` (the grant, nil when refused) and ``asked`` (fixed + flex).
-- Each number's text is converted once per call (``numbers``): a conversion is a strtod,
-- ~900 Redis instructions, a lookup ~150, and a call's counters repeat the same few
-- (limits, prices). No math.min/max: a Lua call into C costs ~800.
local limit = found and v[4] ~= '' and found[v[4]]
if not limit then limit = v[3] end
local fixed = numbers[given]
if fixed == nil then
  fixed = given + 0
  numbers[given] = fixed
end
local amount = fixed
local asked = fixed  -- fixed + flex as asked: the reply names a grant that differs
if extra ~= '' and extra ~= '0' then  -- flex: first capped, then shrunk to the room left
  local flex = extra + 0
  asked = fixed + flex
  local cap = found and v[6] ~= '' and found[v[6]]
  if not cap then cap = v[5] end
  if flex > 0 and cap ~= -1 and flex > cap then
    flex = cap
    if flex < 0 then flex = 0 end
  end
  amount = fixed + flex
  if limit ~= -1 and amount ~= 0 then
    local room = limit - used - fixed
    if flex > 0 then
      if room < 1 then
        amount = nil
      elseif room < flex then
        amount = fixed + room
      else
        amount = fixed + flex
      end
    elseif room < 0 then
      amount = nil
    else
      amount = fixed
    end
  end
elseif limit ~= -1 and fixed ~= 0 and limit - used - fixed < 0 then
  amount = nil
end
