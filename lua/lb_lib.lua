-- Shared helpers of the leaderboard service's scripts (app/leaderboards/scripts.py prepends this file).
-- It defines functions only and writes nothing.
--
-- One board period in Redis, all keys tagged {b:<board>} so a board's scripts run in one Cluster slot:
--   cfg      hash: sort_order, max_entries, revision, period, period_start_ms (the board, any period)
--   z        sorted set: one member per ranked player, "<tie_seq as 16 hex digits>:<player_id>"; its
--            score is the player's score, negated on a desc board, so ZRANGE from 0 is best first and
--            equal scores rank by who reached them first (the smaller tie_seq): PostgreSQL's order
--   entries  hash: player_id -> "version|tie_seq|score|reached_ms|display_name" (score empty: removed)
--   meta     hash: version (bumped by every change), sum, recent_seq; its absence means "not cached"
--   recent   stream: "<seq>-0" -> player_id of every applied change (a rebuild replays those after its mark)
-- Scores are exact integers to +-(2^53 - 1): doubles hold them exactly.
local MAX_EXACT = 9007199254740991

local function member_of(tie_seq, player)
  return string.format('%016x', tie_seq) .. ':' .. player
end

local function player_of(member)
  return string.sub(member, 18)
end

local function zscore_of(cfg, score)
  if redis.call('HGET', cfg, 'sort_order') == 'desc' then return -score end
  return score
end

local function score_of(cfg, zscore)
  local score = as_int(zscore, 'zscore')
  if redis.call('HGET', cfg, 'sort_order') == 'desc' then return -score end
  return score
end

-- The entry of a player: {version, tie_seq, score (nil when removed), reached_ms, name}, or nil.
local function entry_of(entries, player)
  local raw = redis.call('HGET', entries, player)
  if not raw then return nil end
  local version, tie, score, reached, name = string.match(raw, '^(%d+)|(%d+)|([^|]*)|(%-?%d+)|(.*)$')
  return {tonumber(version), tonumber(tie), tonumber(score), tonumber(reached), name}
end

local function pack_entry(version, tie, score, reached, name)
  local shown = score and exact(score) or ''
  return exact(version) .. '|' .. exact(tie) .. '|' .. shown .. '|' .. exact(reached) .. '|' .. name
end

-- Store a player's entry state (score nil: removed) if `version` is newer than the one held.
-- Returns true when it changed anything.
local function put_entry(cfg, z, entries, meta, player, version, tie, score, reached, name)
  local current = entry_of(entries, player)
  if current and current[1] >= version then return false end
  local old_score = current and current[3]
  -- The sum first: the one call that can fail (out of range) does so before anything is written.
  local delta = (score or 0) - (old_score or 0)
  if delta ~= 0 then redis.call('HINCRBY', meta, 'sum', exact(delta)) end
  if old_score then redis.call('ZREM', z, member_of(current[2], player)) end
  if score then redis.call('ZADD', z, exact(zscore_of(cfg, score)), member_of(tie, player)) end
  redis.call('HSET', entries, player, pack_entry(version, tie, score, reached, name))
  return true
end

local function log_recent(meta, recent, player)
  local seq = redis.call('HINCRBY', meta, 'recent_seq', 1)
  redis.call('XADD', recent, 'MAXLEN', '~', RECENT_MAXLEN, seq .. '-0', 'player_id', player)
end

-- How many players the board ranks: all of them, or max_entries at most.
local function ranked_count(cfg, z)
  local count = redis.call('ZCARD', z)
  local cap = tonumber(redis.call('HGET', cfg, 'max_entries') or '')
  if cap and cap < count then return cap end
  return count
end

-- Append rank, member, score, reached_ms, display_name of the members of `page` (ZRANGE ...
-- WITHSCORES), ranked from `first_rank`, to `reply`. The member is "<tie_seq hex>:<player_id>": the
-- player and, with the score, a keyset cursor.
local function append_entries(reply, page, first_rank, cfg, entries)
  for i = 1, #page, 2 do
    local player = player_of(page[i])
    local entry = entry_of(entries, player)
    reply[#reply + 1] = first_rank + (i - 1) / 2
    reply[#reply + 1] = page[i]
    reply[#reply + 1] = exact(score_of(cfg, page[i + 1]))
    reply[#reply + 1] = entry and exact(entry[4]) or '0'
    reply[#reply + 1] = entry and entry[5] or ''
  end
  return reply
end
