-- Register a new room socket of one user, and supersede the oldest ones beyond the allowance:
-- each is named in a `socket_superseded` room notification, which the web process holding it
-- answers by closing it (4409). Entries of sockets whose process died are superseded the same way,
-- harmlessly; the set expires a day after its last socket opened.
-- KEYS: sockets (the user's in this session), room (both tagged {session})
-- ARGV: connection_id, opened_at_ms, allowed
-- Returns the ids superseded.
assert(#KEYS == 2, 'register_room_socket: expected 2 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'register_room_socket: expected 3 ARGV, got ' .. #ARGV)
local sockets, room = KEYS[1], KEYS[2]
local connection_id = ARGV[1]
local opened_at = as_int(ARGV[2], 'opened_at_ms')
local allowed = as_int(ARGV[3], 'allowed')
if allowed < 1 then error('ERR allowed must be >= 1') end

redis.call('ZADD', sockets, exact(opened_at), connection_id)
redis.call('EXPIRE', sockets, 86400)
local superseded = redis.call('ZRANGE', sockets, 0, -(allowed + 1))
for _, old in ipairs(superseded) do
  redis.call('ZREM', sockets, old)
  redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'socket_superseded', 'connection_id', old)
end
return superseded
