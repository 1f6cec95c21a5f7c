-- Apply one participant_joined event: the player appears on the board with 0 points.
-- KEYS: lb, applied, meta, room, names, recent, pending (all tagged {session})
-- ARGV: event_id, natural_key, participant_id, nickname, joined_at_ms, player_count
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == APPLY_KEYS, 'apply_participant_joined: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 6, 'apply_participant_joined: expected 6 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent = unpack(KEYS)
local event_id, natural_key, participant, nickname = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local at_ms = as_int(ARGV[5], 'joined_at_ms')
local player_count = as_int(ARGV[6], 'player_count')

if redis.call('EXISTS', meta) == 0 then return -1 end
if already_applied(applied, event_id, natural_key) then return 0 end
local composite = after_join(lb, participant, reached_since(meta_epoch(meta), at_ms))

redis.call('SADD', applied, event_id, natural_key)
if composite then redis.call('ZADD', lb, exact(composite), participant) end
redis.call('HSET', names, participant, nickname)
local version = redis.call('HINCRBY', meta, 'version', 1)
log_recent(meta, recent, 'type', 'participant_joined', 'event_id', event_id, 'natural_key', natural_key,
  'participant_id', participant, 'points', 0, 'at_ms', exact(at_ms))
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'participant_joined', 'version', version,
  'participant_id', participant, 'nickname', nickname, 'player_count', player_count)
return 1
