-- Apply one participant_joined event: the player appears on the board with 0 points.
-- KEYS: lb, applied, meta, room, names, recent (all tagged {session})
-- ARGV: event_id, participant_id, nickname, joined_at_ms, player_count
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == 6, 'apply_participant_joined: expected 6 KEYS, got ' .. #KEYS)
assert(#ARGV == 5, 'apply_participant_joined: expected 5 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local event_id, participant, nickname = ARGV[1], ARGV[2], ARGV[3]
local join_key = 'joined:' .. participant
local at_ms = as_int(ARGV[4], 'joined_at_ms')
local player_count = as_int(ARGV[5], 'player_count')

if redis.call('EXISTS', meta) == 0 then return -1 end
if redis.call('SISMEMBER', applied, event_id) == 1 or redis.call('SISMEMBER', applied, join_key) == 1 then
  return 0
end
local composite = after_join(lb, participant, reached_since(meta_epoch(meta), at_ms))

redis.call('SADD', applied, event_id, join_key)
if composite then redis.call('ZADD', lb, exact(composite), participant) end
redis.call('HSET', names, participant, nickname)
local version = redis.call('HINCRBY', meta, 'version', 1)
local seq = redis.call('HINCRBY', meta, 'recent_seq', 1)
redis.call('XADD', recent, 'MAXLEN', '~', RECENT_MAXLEN, seq .. '-0', 'type', 'participant_joined',
  'event_id', event_id, 'participant_id', participant, 'points', 0, 'at_ms', exact(at_ms))
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'participant_joined', 'version', version,
  'participant_id', participant, 'nickname', nickname, 'player_count', player_count)
return 1
