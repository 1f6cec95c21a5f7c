-- Apply one answer_scored event, at most once. While its question is open (meta.open_question) the
-- answer is held in `pending`, invisible to every read, and the room only learns who answered and how
-- many have (nothing of the points); the close adds it to the board (apply_question_closed.lua). An answer whose question is
-- no longer open goes straight to the board.
-- KEYS: lb, applied, meta, room, names, recent, pending (all tagged {session})
-- ARGV: event_id, natural_key, participant_id, nickname, points, answered_at_ms, question_id
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == APPLY_KEYS, 'apply_answer_scored: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 7, 'apply_answer_scored: expected 7 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent, pending = unpack(KEYS)
local event_id, natural_key, participant, nickname = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local points = as_int(ARGV[5], 'points')
local at_ms = as_int(ARGV[6], 'answered_at_ms')
local question_id = ARGV[7]
if points < 0 then error('ERR points must not be negative') end

if redis.call('EXISTS', meta) == 0 then return -1 end
if already_applied(applied, event_id, natural_key) then return 0 end
local held = redis.call('HGET', meta, 'open_question') == question_id
local composite
if not held then  -- computed before any write: a score out of range changes nothing
  composite = after_points(lb, participant, points, reached_since(meta_epoch(meta), at_ms))
end

redis.call('SADD', applied, event_id, natural_key)
redis.call('HSET', names, participant, nickname)
log_recent(meta, recent, 'type', 'answer_scored', 'event_id', event_id, 'natural_key', natural_key,
  'participant_id', participant, 'points', points, 'at_ms', exact(at_ms), 'question_id', question_id)
if held then
  hold_answer(pending, participant, points, at_ms)
  redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'answer_received',
    'question_id', question_id, 'participant_id', participant, 'answered', redis.call('HLEN', pending))
  return 1
end
redis.call('ZADD', lb, exact(composite), participant)
local version = redis.call('HINCRBY', meta, 'version', 1)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'answer_scored', 'version', version)
return 1
