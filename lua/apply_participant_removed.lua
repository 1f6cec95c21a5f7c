-- Apply one participant_removed event (the host removed a player): the player leaves the board and
-- their held answer goes; the room hears it, so the player's own sockets close.
-- KEYS: lb, applied, meta, room, names, recent, pending (all tagged {session})
-- ARGV: event_id, natural_key, participant_id, player_count
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
assert(#KEYS == APPLY_KEYS, 'apply_participant_removed: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 4, 'apply_participant_removed: expected 4 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent, pending = unpack(KEYS)
local event_id, natural_key, participant = ARGV[1], ARGV[2], ARGV[3]
local player_count = as_int(ARGV[4], 'player_count')

if redis.call('EXISTS', meta) == 0 then return -1 end
if already_applied(applied, event_id, natural_key) then return 0 end

redis.call('SADD', applied, event_id, natural_key)
redis.call('ZREM', lb, participant)
redis.call('HDEL', pending, participant)
local version = redis.call('HINCRBY', meta, 'version', 1)
log_recent(meta, recent, 'type', 'participant_removed', 'event_id', event_id, 'natural_key', natural_key,
  'participant_id', participant)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'participant_removed', 'version', version,
  'participant_id', participant, 'player_count', player_count)
return 1
