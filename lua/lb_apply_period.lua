-- Apply period_opened: the board's current period becomes `period`, unless a later one is current.
-- The new period's keys are not created here: its first entry, or a read, finds them missing and
-- builds them from PostgreSQL (so a replayed opening can never start a period empty).
-- KEYS: cfg, room (tagged {b:<board>})
-- ARGV: period, starts_at_ms
-- Returns 1 applied, 0 stale or duplicate.
assert(#KEYS == 2, 'lb_apply_period: expected 2 KEYS, got ' .. #KEYS)
assert(#ARGV == 2, 'lb_apply_period: expected 2 ARGV, got ' .. #ARGV)
local cfg, room = KEYS[1], KEYS[2]
local starts_at = as_int(ARGV[2], 'starts_at_ms')

if starts_at <= as_int(redis.call('HGET', cfg, 'period_start_ms') or '-1', 'period_start_ms') then return 0 end
redis.call('HSET', cfg, 'period', ARGV[1], 'period_start_ms', exact(starts_at))
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'period_opened', 'period', ARGV[1])
return 1
