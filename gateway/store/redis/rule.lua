-- The rule of gateway/store/rule.py for one counter, in Lua: written once here and inlined by
-- scripts.py where reserve.lua has a line ``-- <rule>`` (as a Lua function it cost ~1.5k more
-- Redis instructions per counter). Reads ``v`` (the counter: {key, field, fixed, flex, limit,
-- limit override field, cap, cap override field, ...}, the numbers as the gateway wrote
-- them), ``used`` (its value before the reservation) and ``found`` (the override hash's
-- numbers, or false); sets ``limit`` (the effective one) and ``amount`` (the grant, nil when
-- refused).
local limit = found and v[6] ~= '' and found[v[6]] or v[5] + 0
local fixed = v[3] + 0
local amount = fixed
if v[4] ~= '0' then  -- flex: first capped, then shrunk to the room left
  local flex = v[4] + 0
  local cap = found and v[8] ~= '' and found[v[8]] or v[7] + 0
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
