-- Take one socket slot of an address or a user for a web process, unless the processes whose lease
-- has not ended hold `limit` there already. Taking renews the process's lease on the hash, and the
-- hash lives two leases past its last take or renewal.
-- KEYS: slots (the address's or user's hash)
-- ARGV: process, limit, lease_ms
-- Returns 1 when the slot was taken, 0 when the limit is reached.
assert(#KEYS == 1, 'slot_take: expected 1 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'slot_take: expected 3 ARGV, got ' .. #ARGV)
local slots, process = KEYS[1], ARGV[1]
local limit = as_int(ARGV[2], 'limit')
local lease_ms = as_int(ARGV[3], 'lease_ms')
if lease_ms < 1 then error('ERR lease_ms must be >= 1') end

local now = now_ms()
if live_total(slots, now) >= limit then return 0 end
redis.call('HINCRBY', slots, process, 1)
redis.call('HSET', slots, process .. '@', exact(now + lease_ms))
redis.call('PEXPIRE', slots, 2 * lease_ms)
return 1
