-- The quota view's read: a user's hashes and what their leases hold, as of one moment, so a
-- settle cannot fall between the two (it would show a reservation as used).
-- KEYS: the hashes (one slot), then the lease data hash. Returns one field/value list per
-- hash, then the lease payloads.
local out = {}
for i = 1, #KEYS - 1 do out[i] = redis.call('HGETALL', KEYS[i]) end
out[#KEYS] = redis.call('HVALS', KEYS[#KEYS])
return out
