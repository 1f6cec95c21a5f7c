-- Apply period_closed: the period's keys expire at expire_at_s (read later, it is rebuilt from
-- PostgreSQL), and the room hears the final standings.
-- KEYS: z, entries, meta, recent, room (all tagged {b:<board>})
-- ARGV: period, expire_at_s, final (JSON of the final top N, for the room)
-- Returns 1.
assert(#KEYS == 5, 'lb_close_period: expected 5 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'lb_close_period: expected 3 ARGV, got ' .. #ARGV)
local expire_at = as_int(ARGV[2], 'expire_at_s')
for i = 1, 4 do redis.call('EXPIREAT', KEYS[i], exact(expire_at)) end
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'period_closed', 'period', ARGV[1],
  'data', ARGV[3])
return 1
