-- Apply question_opened, question_closed or session_ended: dedupe and notify the room.
-- They do not change the board, so the version is not bumped.
-- session_ended also sets every key of the session to expire at expire_at_s (0: never): after that
-- a late delivery finds no meta, and the rebuild re-derives the dedupe state from PostgreSQL.
-- KEYS: applied, meta, room, lb, names, recent (all tagged {session})
-- ARGV: event_id, natural_key, type, expire_at_s, then field, value pairs for the room notification
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == 6, 'apply_session_event: expected 6 KEYS, got ' .. #KEYS)
assert(#ARGV >= 4 and #ARGV % 2 == 0, 'apply_session_event: expected 4 ARGV and field/value pairs, got ' .. #ARGV)
local applied, meta, room = KEYS[1], KEYS[2], KEYS[3]
local event_id, natural_key, event_type = ARGV[1], ARGV[2], ARGV[3]
local expire_at = as_int(ARGV[4], 'expire_at_s')
local known = {question_opened = true, question_closed = true, session_ended = true}
if not known[event_type] then error('ERR apply_session_event: unexpected type ' .. event_type) end

if redis.call('EXISTS', meta) == 0 then return -1 end
if redis.call('SISMEMBER', applied, event_id) == 1 or redis.call('SISMEMBER', applied, natural_key) == 1 then
  return 0
end
local version = redis.call('HGET', meta, 'version') or '0'

redis.call('SADD', applied, event_id, natural_key)
local entry = {'XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', event_type, 'version', version}
for i = 5, #ARGV do entry[#entry + 1] = ARGV[i] end
redis.call(unpack(entry))
if event_type == 'session_ended' and expire_at > 0 then
  redis.call('HSET', meta, 'expire_at', exact(expire_at))
  for _, key in ipairs(KEYS) do redis.call('EXPIREAT', key, exact(expire_at)) end
end
return 1
