-- The rule of gateway/store/rule.py for one counter, in Lua: written once here and inlined by
-- scripts.py where reserve.lua has a line ``-- <rule>`` (as a Lua function it cost ~1.5k more
-- Redis instructions per counter). Reads ``lay`` and ``b`` (the counter's layout from
-- lay[b]: key index, field, limit, cap; ``sent``: its limit, lay[b + 2]), ``fixed`` and
-- ``flex`` (its amounts), ``used`` (its value before the reservation), ``found`` (the override
-- hash's numbers, or false) and, when found, ``names`` (counter i's limit and cap override
-- fields at 2i-1 and 2i); sets ``limit`` (the effective one), ``amount`` (the grant, nil when
-- refused) and ``asked`` (fixed + flex). No math.min/max: a Lua call into C costs ~800 Redis
-- instructions.
local limit = found and names[2 * i - 1] ~= '' and found[names[2 * i - 1]]
if not limit then limit = sent end
local amount = fixed
local asked = fixed + flex  -- as asked: the reply names a grant that differs
if flex ~= 0 then  -- flex: first capped, then shrunk to the room left
  local cap = found and names[2 * i] ~= '' and found[names[2 * i]]
  if not cap then cap = lay[b + 3] end
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
