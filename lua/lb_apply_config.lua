-- Apply board_created or board_updated: the board's configuration as of `revision`, never an older one.
-- KEYS: cfg, room (tagged {b:<board>})
-- ARGV: revision, sort_order, max_entries ('' when none)
-- Returns 1 applied, 0 stale or duplicate.
assert(#KEYS == 2, 'lb_apply_config: expected 2 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'lb_apply_config: expected 3 ARGV, got ' .. #ARGV)
local cfg, room = KEYS[1], KEYS[2]
local revision = as_int(ARGV[1], 'revision')
if ARGV[2] ~= 'asc' and ARGV[2] ~= 'desc' then error('ERR sort_order must be asc or desc') end

if revision <= as_int(redis.call('HGET', cfg, 'revision') or '0', 'revision') then return 0 end
redis.call('HSET', cfg, 'revision', revision, 'sort_order', ARGV[2])
if ARGV[3] == '' then redis.call('HDEL', cfg, 'max_entries')
else redis.call('HSET', cfg, 'max_entries', as_int(ARGV[3], 'max_entries')) end
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'board_configured', 'revision', revision)
return 1
