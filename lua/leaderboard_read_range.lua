-- A page of a board period by rank, read atomically: version, total and entries of one snapshot.
-- Only the first max_entries ranks are ranked (and counted in total).
-- KEYS: cfg, z, entries, meta (all tagged {b:<board>})
-- ARGV: offset (0-based rank), count
-- Returns {-1} when the period is not cached here, else
-- {version, total, rank_1, member_1, score_1, reached_ms_1, name_1, metadata_1 ('' for none), rank_2, ...}.
assert(#KEYS == 4, 'leaderboard_read_range: expected 4 KEYS, got ' .. #KEYS)
assert(#ARGV == 2, 'leaderboard_read_range: expected 2 ARGV, got ' .. #ARGV)
local cfg, z, entries, meta = unpack(KEYS)
local offset = as_int(ARGV[1], 'offset')
local count = as_int(ARGV[2], 'count')
if offset < 0 or count < 1 then error('ERR offset must be >= 0 and count >= 1') end

if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', cfg) == 0 then return {-1} end
local total = ranked_count(cfg, z)
local reply = {as_int(redis.call('HGET', meta, 'version') or '0', 'version'), total}
local last = math.min(offset + count, total) - 1
if last < offset then return reply end
return append_entries(reply, redis.call('ZRANGE', z, offset, last, 'WITHSCORES'), offset + 1, cfg, entries)
