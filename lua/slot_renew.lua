-- Renew a web process's lease on an address's or user's hash, with the count of sockets the process
-- holds there: what a take or give-back in flight meanwhile changed is set right at the next renewal,
-- and so are fields dropped while the process was too busy to renew.
-- KEYS: slots (the address's or user's hash)
-- ARGV: process, held (the process's open sockets there), lease_ms
-- Returns held.
assert(#KEYS == 1, 'slot_renew: expected 1 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'slot_renew: expected 3 ARGV, got ' .. #ARGV)
local slots, process = KEYS[1], ARGV[1]
local held = as_int(ARGV[2], 'held')
local lease_ms = as_int(ARGV[3], 'lease_ms')
if lease_ms < 1 then error('ERR lease_ms must be >= 1') end

if held < 1 then
  redis.call('HDEL', slots, process, process .. '@')
  return 0
end
redis.call('HSET', slots, process, held, process .. '@', exact(now_ms() + lease_ms))
redis.call('PEXPIRE', slots, 2 * lease_ms)
return held
