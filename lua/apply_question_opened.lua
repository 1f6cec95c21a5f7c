-- Apply one question_opened event: answers to this question are held until it closes.
-- KEYS: lb, applied, meta, room, names, recent, pending (all tagged {session})
-- ARGV: event_id, natural_key, question_id, position, data (the question as JSON, for the room)
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == APPLY_KEYS, 'apply_question_opened: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 5, 'apply_question_opened: expected 5 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent = unpack(KEYS)
local event_id, natural_key, question_id, position, data = unpack(ARGV)

if redis.call('EXISTS', meta) == 0 then return -1 end
if already_applied(applied, event_id, natural_key) then return 0 end

redis.call('SADD', applied, event_id, natural_key)
redis.call('HSET', meta, 'open_question', question_id)
log_recent(meta, recent, 'type', 'question_opened', 'event_id', event_id, 'natural_key', natural_key,
  'question_id', question_id)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'question_opened',
  'version', redis.call('HGET', meta, 'version') or '0', 'question_id', question_id, 'position', position,
  'data', data)
return 1
