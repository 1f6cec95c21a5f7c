-- Give back one socket slot a web process took (its socket closed). A process left with none there
-- loses its fields.
-- KEYS: slots (the address's or user's hash)
-- ARGV: process
-- Returns the process's sockets left there.
assert(#KEYS == 1, 'slot_give_back: expected 1 KEYS, got ' .. #KEYS)
assert(#ARGV == 1, 'slot_give_back: expected 1 ARGV, got ' .. #ARGV)
local slots, process = KEYS[1], ARGV[1]

local left = redis.call('HINCRBY', slots, process, -1)
if left <= 0 then
  redis.call('HDEL', slots, process, process .. '@')
  return 0
end
return left
