-- Shared leaderboard helpers, prepended to the scripts that change or read a board
-- (app/session_boards/scripts.py). It defines functions only and writes nothing.
--
-- A member's sorted-set score is the composite  score * 2^34 + (2^34 - 1 - reached_ms):
-- higher score first, and on equal scores whoever reached it first (smaller reached_ms).
-- Scores stay below 2^19, so composites stay below 2^53 and every double is an exact integer.
local TIE = 17179869184            -- 2^34
local MAX_REACHED = TIE - 1
local MAX_SCORE = 524287           -- 2^19 - 1

local function reached_since(epoch_ms, at_ms)
  local reached = at_ms - epoch_ms
  if reached < 0 then return 0 end
  if reached > MAX_REACHED then return MAX_REACHED end
  return reached
end

local function compose(score, reached)
  if score < 0 or score > MAX_SCORE then
    error('ERR score ' .. exact(score) .. ' is outside 0..' .. MAX_SCORE)
  end
  return score * TIE + (MAX_REACHED - reached)
end

-- score, reached_ms of a member (0, 0 when absent).
local function member_state(board, member)
  local current = redis.call('ZSCORE', board, member)
  if not current then return 0, 0, false end
  local composite = tonumber(current)
  local score = math.floor(composite / TIE)
  return score, MAX_REACHED - (composite - score * TIE), true
end

-- The composite after adding points. The reach time is the latest positive answer (a max, so the
-- result does not depend on the order events are applied in); a join sets it to the join time.
local function after_points(board, member, points, reached)
  local score, at = member_state(board, member)
  if points > 0 and reached > at then at = reached end
  return compose(score + points, at), score + points
end

-- The composite after a join, or nil when the join changes nothing.
local function after_join(board, member, reached)
  local score, at, present = member_state(board, member)
  if present and at >= reached then return nil end
  return compose(score, reached)
end

local function meta_epoch(meta)
  return as_int(redis.call('HGET', meta, 'epoch_ms'), 'meta epoch_ms')
end

-- The apply scripts of a session share one KEYS order:
--   lb, applied, meta, room, names, recent, pending  (all tagged {session})
-- and begin their ARGV with event_id, natural_key (built by app/session_boards/apply.py).
local APPLY_KEYS = 7

-- Dedupe by event id and by the natural key of the fact (kept when published events are pruned).
local function already_applied(applied, event_id, natural_key)
  return redis.call('SISMEMBER', applied, event_id) == 1 or redis.call('SISMEMBER', applied, natural_key) == 1
end

-- Log an applied change in `recent` (id <seq>-0), which a rebuild replays onto its snapshot.
local function log_recent(meta, recent, ...)
  local seq = redis.call('HINCRBY', meta, 'recent_seq', 1)
  redis.call('XADD', recent, 'MAXLEN', '~', RECENT_MAXLEN, seq .. '-0', ...)
end

-- An open question's answers wait in `pending` (participant -> "points:at_ms"), invisible to reads.
local function hold_answer(pending, participant, points, at_ms)
  redis.call('HSET', pending, participant, points .. ':' .. exact(at_ms))
end

-- Add every held answer to `board` (the question closed); returns how many there were.
local function release_answers(board, pending, epoch)
  local held = redis.call('HGETALL', pending)
  for i = 1, #held, 2 do
    local sep = string.find(held[i + 1], ':', 1, true)
    local points = as_int(string.sub(held[i + 1], 1, sep - 1), 'held points')
    local at_ms = as_int(string.sub(held[i + 1], sep + 1), 'held at_ms')
    local composite = after_points(board, held[i], points, reached_since(epoch, at_ms))
    redis.call('ZADD', board, exact(composite), held[i])
  end
  redis.call('DEL', pending)
  return #held / 2
end

-- Append (member, score, nickname) triples of a ZREVRANGE ... WITHSCORES page to `reply`.
local function append_entries(reply, page, names)
  for i = 1, #page, 2 do
    reply[#reply + 1] = page[i]
    reply[#reply + 1] = math.floor(tonumber(page[i + 1]) / TIE)
    reply[#reply + 1] = redis.call('HGET', names, page[i]) or ''
  end
  return reply
end
