-- Apply one entry_changed or entry_removed event: store the entry's resulting state if its version is
-- newer than the one held. Any delivery order and any number of redeliveries leave the same board,
-- and a removed entry cannot come back from a stale event (the removal keeps its version).
-- KEYS: cfg, z, entries, meta, recent, room (all tagged {b:<board>})
-- ARGV: player_id, version, tie_seq, score ('' when removed), reached_ms, display_name, period
-- Returns 1 applied, 0 stale or duplicate, -1 the period is not cached here (rebuild it from PostgreSQL).
assert(#KEYS == 6, 'lb_apply_entry: expected 6 KEYS, got ' .. #KEYS)
assert(#ARGV == 7, 'lb_apply_entry: expected 7 ARGV, got ' .. #ARGV)
local cfg, z, entries, meta, recent, room = unpack(KEYS)
local player = ARGV[1]
local version = as_int(ARGV[2], 'version')
local tie = as_int(ARGV[3], 'tie_seq')
local score = nil
if ARGV[4] ~= '' then score = as_int(ARGV[4], 'score') end
local reached = as_int(ARGV[5], 'reached_ms')
if score and (score > MAX_EXACT or score < -MAX_EXACT) then error('ERR score is not exact') end

if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', cfg) == 0 then return -1 end
if not put_entry(cfg, z, entries, meta, player, version, tie, score, reached, ARGV[6]) then return 0 end
local board_version = redis.call('HINCRBY', meta, 'version', 1)
log_recent(meta, recent, player)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'board_changed', 'period', ARGV[7],
  'version', board_version, 'player_id', player)
return 1
