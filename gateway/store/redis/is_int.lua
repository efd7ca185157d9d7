-- Prepended to every script (before common.lua, where a script has it): whether a value is an
-- integer within +-2^53 (exact as a Lua number).
local function is_int(value)
  if type(value) ~= 'string' or not string.find(value, '^%-?%d+$') then return false end
  local digits = #value
  if string.byte(value, 1) == 45 then digits = digits - 1 end  -- 45: '-'
  return digits <= 16 and math.abs(tonumber(value)) <= 9007199254740992
end

