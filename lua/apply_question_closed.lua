-- Apply one question_closed event: every held answer of the question reaches the board at once, in
-- one new board version, then the room learns the result.
-- KEYS: lb, applied, meta, room, names, recent, pending (all tagged {session})
-- ARGV: event_id, natural_key, question_id, position, data (the result as JSON, for the room)
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == APPLY_KEYS, 'apply_question_closed: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 5, 'apply_question_closed: expected 5 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent, pending = unpack(KEYS)
local event_id, natural_key, question_id, position, data = unpack(ARGV)

if redis.call('EXISTS', meta) == 0 then return -1 end
if already_applied(applied, event_id, natural_key) then return 0 end

redis.call('SADD', applied, event_id, natural_key)
if redis.call('HGET', meta, 'open_question') == question_id then
  release_answers(lb, pending, meta_epoch(meta))
  redis.call('HDEL', meta, 'open_question')
end
local version = redis.call('HINCRBY', meta, 'version', 1)
log_recent(meta, recent, 'type', 'question_closed', 'event_id', event_id, 'natural_key', natural_key,
  'question_id', question_id)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'question_closed', 'version', version,
  'question_id', question_id, 'position', position, 'data', data)
return 1
