-- Shared helpers of the leaderboard service's scripts (app/leaderboards/board/scripts.py prepends this file).
-- It defines functions only and writes nothing.
--
-- One board period in Redis, all keys tagged {b:<board>} so a board's scripts run in one Cluster slot:
--   cfg      hash: sort_order, max_entries, revision, period, period_start_ms (the board, any period)
--   z        sorted set: one member per ranked player, "<tie_seq as 16 hex digits>:<player_id>"; its
--            score is the player's score, negated on a desc board, so ZRANGE from 0 is best first and
--            equal scores rank by who reached them first (the smaller tie_seq): PostgreSQL's order
--   entries  hash: player_id -> "version|tie_seq|score|reached_ms|display_name" (score empty: removed),
--            and "\31<player_id>" -> the entry's metadata as compact JSON, when it has some (a player id
--            never holds a control character). Ranking and applying never read the metadata; a read
--            HGETs it only for the entries its reply returns.
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

local function metadata_field(player)
  return '\31' .. player
end

local function metadata_of(entries, player)
  return redis.call('HGET', entries, metadata_field(player)) or ''
end

local function pack_entry(version, tie, score, reached, name)
  local shown = score and exact(score) or ''
  return exact(version) .. '|' .. exact(tie) .. '|' .. shown .. '|' .. exact(reached) .. '|' .. name
end

-- Store a player's entry state (score nil: removed) and metadata ('' for none) if `version` is newer
-- than the one held. Returns true when it changed anything.
local function put_entry(cfg, z, entries, meta, player, version, tie, score, reached, name, metadata)
  local current = entry_of(entries, player)
  if current and current[1] >= version then return false end
  local old_score = current and current[3]
  -- The sum first: the one call that can fail (out of range) does so before anything is written.
  local delta = (score or 0) - (old_score or 0)
  if delta ~= 0 then redis.call('HINCRBY', meta, 'sum', exact(delta)) end
  if old_score then redis.call('ZREM', z, member_of(current[2], player)) end
  if score then redis.call('ZADD', z, exact(zscore_of(cfg, score)), member_of(tie, player)) end
  redis.call('HSET', entries, player, pack_entry(version, tie, score, reached, name))
  if score and metadata ~= '' then redis.call('HSET', entries, metadata_field(player), metadata)
  else redis.call('HDEL', entries, metadata_field(player)) end
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

-- Append rank, member, score, reached_ms, display_name, metadata of the members of `page` (ZRANGE ...
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
    reply[#reply + 1] = metadata_of(entries, player)
  end
  return reply
end

-- Applying one board event: APPLY.<script>(keys, argv), with the KEYS and ARGV of its one-event script
-- (app/leaderboards/board/apply.py builds both). Each checks its ARGV, computes anything that can fail before
-- it writes, and returns 1 applied, 0 stale or duplicate, or -1 the period is not cached here (rebuild it
-- from PostgreSQL). The one-event scripts (leaderboard_apply_*.lua, leaderboard_close_period.lua) and the batch
-- (apply_batch.lua) both call these: one copy of every rule.
local APPLY = {}

-- KEYS: cfg, z, entries, meta, recent, room; ARGV: player_id, version, tie_seq, score ('' when removed),
-- reached_ms, display_name, period, metadata (compact JSON, '' for none)
function APPLY.leaderboard_apply_entry(keys, argv)
  assert(#argv == 8, 'leaderboard_apply_entry: expected 8 ARGV, got ' .. #argv)
  local cfg, z, entries, meta, recent, room = unpack(keys)
  local player = argv[1]
  local version = as_int(argv[2], 'version')
  local tie = as_int(argv[3], 'tie_seq')
  local score = nil
  if argv[4] ~= '' then score = as_int(argv[4], 'score') end
  local reached = as_int(argv[5], 'reached_ms')
  if score and (score > MAX_EXACT or score < -MAX_EXACT) then error('ERR score is not exact') end

  if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', cfg) == 0 then return -1 end
  if not put_entry(cfg, z, entries, meta, player, version, tie, score, reached, argv[6], argv[8]) then return 0 end
  local board_version = redis.call('HINCRBY', meta, 'version', 1)
  log_recent(meta, recent, player)
  notify(room, 'type', 'board_changed', 'period', argv[7],
    'version', board_version, 'player_id', player)
  return 1
end

-- KEYS: cfg, room; ARGV: revision, sort_order, max_entries ('' when none)
function APPLY.leaderboard_apply_config(keys, argv)
  assert(#argv == 3, 'leaderboard_apply_config: expected 3 ARGV, got ' .. #argv)
  local cfg, room = keys[1], keys[2]
  local revision = as_int(argv[1], 'revision')
  if argv[2] ~= 'asc' and argv[2] ~= 'desc' then error('ERR sort_order must be asc or desc') end

  if revision <= as_int(redis.call('HGET', cfg, 'revision') or '0', 'revision') then return 0 end
  redis.call('HSET', cfg, 'revision', revision, 'sort_order', argv[2])
  if argv[3] == '' then redis.call('HDEL', cfg, 'max_entries')
  else redis.call('HSET', cfg, 'max_entries', as_int(argv[3], 'max_entries')) end
  notify(room, 'type', 'board_configured', 'revision', revision)
  return 1
end

-- KEYS: cfg, room; ARGV: period, starts_at_ms
function APPLY.leaderboard_apply_period(keys, argv)
  assert(#argv == 2, 'leaderboard_apply_period: expected 2 ARGV, got ' .. #argv)
  local cfg, room = keys[1], keys[2]
  local starts_at = as_int(argv[2], 'starts_at_ms')

  if starts_at <= as_int(redis.call('HGET', cfg, 'period_start_ms') or '-1', 'period_start_ms') then return 0 end
  redis.call('HSET', cfg, 'period', argv[1], 'period_start_ms', exact(starts_at))
  notify(room, 'type', 'period_opened', 'period', argv[1])
  return 1
end

-- KEYS: z, entries, meta, recent, room; ARGV: period, expire_at_s, final (JSON of the final top N)
function APPLY.leaderboard_close_period(keys, argv)
  assert(#argv == 3, 'leaderboard_close_period: expected 3 ARGV, got ' .. #argv)
  local expire_at = as_int(argv[2], 'expire_at_s')
  for i = 1, 4 do redis.call('EXPIREAT', keys[i], exact(expire_at)) end
  notify(keys[5], 'type', 'period_closed', 'period', argv[1],
    'data', argv[3])
  return 1
end
