-- Apply one answer_scored event to a session's board, at most once.
-- KEYS: lb, applied, meta, room, names, recent (all tagged {session})
-- ARGV: event_id, answer_id, participant_id, nickname, points, answered_at_ms, total, streak,
--       question_id, correct (0|1)
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == 6, 'apply_answer_scored: expected 6 KEYS, got ' .. #KEYS)
assert(#ARGV == 10, 'apply_answer_scored: expected 10 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local event_id, answer_key, participant, nickname = ARGV[1], 'answer:' .. ARGV[2], ARGV[3], ARGV[4]
local points = as_int(ARGV[5], 'points')
local at_ms = as_int(ARGV[6], 'answered_at_ms')
local total = as_int(ARGV[7], 'total')
local streak = as_int(ARGV[8], 'streak')
local question_id, correct = ARGV[9], ARGV[10]
if points < 0 then error('ERR points must not be negative') end

if redis.call('EXISTS', meta) == 0 then return -1 end
if redis.call('SISMEMBER', applied, event_id) == 1 or redis.call('SISMEMBER', applied, answer_key) == 1 then
  return 0
end
local composite, score = after_points(lb, participant, points, reached_since(meta_epoch(meta), at_ms))

redis.call('SADD', applied, event_id, answer_key)
redis.call('ZADD', lb, exact(composite), participant)
redis.call('HSET', names, participant, nickname)
local version = redis.call('HINCRBY', meta, 'version', 1)
local seq = redis.call('HINCRBY', meta, 'recent_seq', 1)
redis.call('XADD', recent, 'MAXLEN', '~', RECENT_MAXLEN, seq .. '-0', 'type', 'answer_scored',
  'event_id', event_id, 'participant_id', participant, 'points', points, 'at_ms', exact(at_ms))
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'answer_scored', 'version', version,
  'participant_id', participant, 'nickname', nickname, 'question_id', question_id, 'correct', correct,
  'points', points, 'score', score, 'total', total, 'streak', streak)
return 1
