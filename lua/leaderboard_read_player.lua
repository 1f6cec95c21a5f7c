-- A player's standing and, with range > 0, the window of min(2 range + 1, total) ranks around it,
-- shifted at either end so the player is always in it, all read atomically.
-- KEYS: cfg, z, entries, meta (all tagged {b:<board>})
-- ARGV: player_id, range[, at_version]
-- Returns {-1} when the period is not cached here; with at_version, {version, total, -3} while the
-- player's entry is older than that version (a write not shown yet); {version, total, 0} when the
-- player has no score;
-- {version, total, -2, score, reached_ms, name, metadata} when the player is beyond max_entries (not ranked);
-- else {version, total, rank, score, reached_ms, name, metadata, window entries as in leaderboard_read_range...}.
assert(#KEYS == 4, 'leaderboard_read_player: expected 4 KEYS, got ' .. #KEYS)
assert(#ARGV == 2 or #ARGV == 3, 'leaderboard_read_player: expected 2 or 3 ARGV, got ' .. #ARGV)
local cfg, z, entries, meta = unpack(KEYS)
local player = ARGV[1]
local range = as_int(ARGV[2], 'range')
if range < 0 then error('ERR range must be >= 0') end

if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', cfg) == 0 then return {-1} end
local total = ranked_count(cfg, z)
local reply = {as_int(redis.call('HGET', meta, 'version') or '0', 'version'), total}
local entry = entry_of(entries, player)
if ARGV[3] and (not entry or entry[1] < as_int(ARGV[3], 'at_version')) then reply[3] = -3 return reply end
if not entry or not entry[3] then reply[3] = 0 return reply end
local rank0 = redis.call('ZRANK', z, member_of(entry[2], player))
local own = {exact(entry[3]), exact(entry[4]), entry[5], metadata_of(entries, player)}
if rank0 >= total then
  reply[3] = -2
  for _, v in ipairs(own) do reply[#reply + 1] = v end
  return reply
end
reply[3] = rank0 + 1
for _, v in ipairs(own) do reply[#reply + 1] = v end
if range == 0 then return reply end
local size = math.min(2 * range + 1, total)
local first = math.max(0, math.min(rank0 - range, total - size))
return append_entries(reply, redis.call('ZRANGE', z, first, first + size - 1, 'WITHSCORES'), first + 1, cfg, entries)
