-- Statistics of the ranked entries of a board period: count, min, max, sum, and the nearest-rank
-- percentiles of the scores (PostgreSQL's percentile_disc), read atomically.
-- KEYS: cfg, z, entries, meta (all tagged {b:<board>})
-- ARGV: percent_1, percent_2, ... (integers 1..100)
-- Returns {-1} when the period is not cached here, else {version, count, min, max, sum, p_1, p_2, ...}
-- (min, max, sum and percentiles are '' when there are no entries).
assert(#KEYS == 4, 'leaderboard_read_stats: expected 4 KEYS, got ' .. #KEYS)
local cfg, z, entries, meta = unpack(KEYS)

if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', cfg) == 0 then return {-1} end
local count = ranked_count(cfg, z)
local reply = {as_int(redis.call('HGET', meta, 'version') or '0', 'version'), count}
if count == 0 then
  for _ = 1, 3 + #ARGV do reply[#reply + 1] = '' end
  return reply
end
local desc = redis.call('HGET', cfg, 'sort_order') == 'desc'
-- The i-th smallest score (1-based) among the ranked: the set runs best first.
local function ascending(i)
  local index = desc and (count - i) or (i - 1)
  return exact(score_of(cfg, redis.call('ZRANGE', z, index, index, 'WITHSCORES')[2]))
end
reply[3] = ascending(1)
reply[4] = ascending(count)
if count == redis.call('ZCARD', z) then
  reply[5] = redis.call('HGET', meta, 'sum') or '0'
else
  local sum = 0
  local page = redis.call('ZRANGE', z, 0, count - 1, 'WITHSCORES')
  for i = 2, #page, 2 do sum = sum + score_of(cfg, page[i]) end
  reply[5] = exact(sum)
end
for _, percent in ipairs(ARGV) do
  local p = as_int(percent, 'percent')
  reply[#reply + 1] = ascending(math.max(1, math.floor((p * count + 99) / 100)))
end
return reply
