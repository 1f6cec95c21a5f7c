-- Apply one session_ended event: notify the room, then let every key of the session expire at
-- expire_at_s (0: never). A later delivery finds no meta, and the rebuild re-derives the dedupe
-- state from PostgreSQL.
-- KEYS: lb, applied, meta, room, names, recent, pending (all tagged {session})
-- ARGV: event_id, natural_key, expire_at_s, ended_at
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == APPLY_KEYS, 'apply_session_ended: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 4, 'apply_session_ended: expected 4 ARGV, got ' .. #ARGV)
local lb, applied, meta, room = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local event_id, natural_key = ARGV[1], ARGV[2]
local expire_at = as_int(ARGV[3], 'expire_at_s')

if redis.call('EXISTS', meta) == 0 then return -1 end
if already_applied(applied, event_id, natural_key) then return 0 end

redis.call('SADD', applied, event_id, natural_key)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'session_ended',
  'version', redis.call('HGET', meta, 'version') or '0', 'ended_at', ARGV[4])
if expire_at > 0 then
  redis.call('HSET', meta, 'expire_at', exact(expire_at))
  for _, key in ipairs(KEYS) do redis.call('EXPIREAT', key, exact(expire_at)) end
end
return 1
