-- The page that follows a keyset cursor (the score and member of the last entry of the previous
-- page): an entry that did not change between two pages appears on exactly one of them, however the
-- board moved meanwhile. The cursor's position is found by probing its member into the set for the
-- length of the call (atomic: nobody sees the probe).
-- KEYS: cfg, z, entries, meta (all tagged {b:<board>})
-- ARGV: score, member, count
-- Returns {-1} when the period is not cached here, else the reply of leaderboard_read_range.
assert(#KEYS == 4, 'leaderboard_read_after: expected 4 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'leaderboard_read_after: expected 3 ARGV, got ' .. #ARGV)
local cfg, z, entries, meta = unpack(KEYS)
local member = ARGV[2]
local count = as_int(ARGV[3], 'count')
if count < 1 then error('ERR count must be >= 1') end

if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', cfg) == 0 then return {-1} end
local zscore = zscore_of(cfg, as_int(ARGV[1], 'score'))
local held = redis.call('ZSCORE', z, member)
local offset
if held and as_int(held, 'zscore') == zscore then
  offset = redis.call('ZRANK', z, member) + 1
else
  redis.call('ZADD', z, exact(zscore), member)
  offset = redis.call('ZRANK', z, member)
  if held then redis.call('ZADD', z, held, member) else redis.call('ZREM', z, member) end
end
local total = ranked_count(cfg, z)
local reply = {as_int(redis.call('HGET', meta, 'version') or '0', 'version'), total}
local last = math.min(offset + count, total) - 1
if last < offset then return reply end
return append_entries(reply, redis.call('ZRANGE', z, offset, last, 'WITHSCORES'), offset + 1, cfg, entries)
