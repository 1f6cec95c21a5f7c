-- Shared leaderboard helpers, prepended to the scripts that change or read a board
-- (app/quiz/board/scripts.py). It defines functions only and writes nothing.
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
--   lb, applied, meta, room, names, recent, pending, results  (all tagged {session})
-- and begin their ARGV with event_id, natural_key (built by app/quiz/board/apply.py).
local APPLY_KEYS = 8

-- `results` holds the answers to the question opened last, and keeps those of the question closed before
-- it until the next close, so the room tells each player how a close went without asking PostgreSQL,
-- also when the host's Next opened the next question before the room read the close (the close and the
-- open are one transaction). Fields: participant -> "<question_id>|choice:correct(0|1):points:streak"
-- (the values PostgreSQL recorded, from answer_scored, tagged with their question); '_question' and
-- '_points' (the question opened last, set when it opened); '_done' and '_done_points' (the question
-- closed last, set by its close when its open was applied to this key and nothing since invalidated it:
-- a removal while it was open, a rebuild); '_after' (the question opened since '_done' closed). For the
-- question '_done' names, a player whose field is tagged with it answered it; one with no field, or one
-- tagged with an older question, did not; one tagged with '_after' answered the next question before
-- the room read this close, and readers ask PostgreSQL, as for any other question.
local function record_result(results, question_id, participant, choice, correct, points, streak)
  if redis.call('HGET', results, '_question') == question_id then
    redis.call('HSET', results, participant,
      question_id .. '|' .. choice .. ':' .. correct .. ':' .. points .. ':' .. streak)
  end
end

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

-- Applying one event of each type, at most once: APPLY.<script>(keys, argv), with the apply KEYS above
-- and the event's ARGV (app/quiz/board/apply.py builds both). Each checks its ARGV, computes
-- anything that can fail before it writes, and returns 1 applied, 0 duplicate, or -1 the session has
-- no board here (rebuild it from PostgreSQL first). The one-event scripts (apply_<type>.lua) and the
-- batch (apply_batch.lua) both call these: one copy of every rule.
local APPLY = {}

-- ARGV: event_id, natural_key, participant_id, nickname, points, answered_at_ms, question_id, choice,
--       correct (0|1), streak (after this answer)
function APPLY.apply_answer_scored(keys, argv)
  assert(#argv == 10, 'apply_answer_scored: expected 10 ARGV, got ' .. #argv)
  local lb, applied, meta, room, names, recent, pending, results = unpack(keys)
  local event_id, natural_key, participant, nickname = argv[1], argv[2], argv[3], argv[4]
  local points = as_int(argv[5], 'points')
  local at_ms = as_int(argv[6], 'answered_at_ms')
  local question_id = argv[7]
  local choice = as_int(argv[8], 'choice')
  local correct = as_int(argv[9], 'correct')
  local streak = as_int(argv[10], 'streak')
  if points < 0 then error('ERR points must not be negative') end

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end
  local held = redis.call('HGET', meta, 'open_question') == question_id
  local composite
  if not held then  -- computed before any write: a score out of range changes nothing
    composite = after_points(lb, participant, points, reached_since(meta_epoch(meta), at_ms))
  end

  redis.call('SADD', applied, event_id, natural_key)
  redis.call('HSET', names, participant, nickname)
  log_recent(meta, recent, 'type', 'answer_scored', 'event_id', event_id, 'natural_key', natural_key,
    'participant_id', participant, 'points', points, 'at_ms', exact(at_ms), 'question_id', question_id)
  record_result(results, question_id, participant, exact(choice), exact(correct), exact(points), exact(streak))
  if held then
    hold_answer(pending, participant, points, at_ms)
    notify(room, 'type', 'answer_received',
      'question_id', question_id, 'participant_id', participant, 'answered', redis.call('HLEN', pending),
      'player_count', redis.call('ZCARD', lb))
    return 1
  end
  redis.call('ZADD', lb, exact(composite), participant)
  local version = redis.call('HINCRBY', meta, 'version', 1)
  notify(room, 'type', 'answer_scored', 'version', version)
  return 1
end

-- ARGV: event_id, natural_key, participant_id, nickname, joined_at_ms
-- The room hears how many players the board holds (who is on it, not who one web process saw join).
function APPLY.apply_participant_joined(keys, argv)
  assert(#argv == 5, 'apply_participant_joined: expected 5 ARGV, got ' .. #argv)
  local lb, applied, meta, room, names, recent = unpack(keys)
  local event_id, natural_key, participant, nickname = argv[1], argv[2], argv[3], argv[4]
  local at_ms = as_int(argv[5], 'joined_at_ms')

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end
  local composite = after_join(lb, participant, reached_since(meta_epoch(meta), at_ms))

  redis.call('SADD', applied, event_id, natural_key)
  if composite then redis.call('ZADD', lb, exact(composite), participant) end
  redis.call('HSET', names, participant, nickname)
  local version = redis.call('HINCRBY', meta, 'version', 1)
  log_recent(meta, recent, 'type', 'participant_joined', 'event_id', event_id, 'natural_key', natural_key,
    'participant_id', participant, 'points', 0, 'at_ms', exact(at_ms))
  notify(room, 'type', 'participant_joined', 'version', version,
    'participant_id', participant, 'nickname', nickname, 'player_count', redis.call('ZCARD', lb))
  return 1
end

-- ARGV: event_id, natural_key, participant_id
function APPLY.apply_participant_removed(keys, argv)
  assert(#argv == 3, 'apply_participant_removed: expected 3 ARGV, got ' .. #argv)
  local lb, applied, meta, room, names, recent, pending, results = unpack(keys)
  local event_id, natural_key, participant = argv[1], argv[2], argv[3]

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end

  redis.call('SADD', applied, event_id, natural_key)
  redis.call('ZREM', lb, participant)
  redis.call('HDEL', pending, participant)
  -- PostgreSQL zeroes a removed player's answer to the open question: its close asks PostgreSQL.
  redis.call('HDEL', results, '_question')
  local version = redis.call('HINCRBY', meta, 'version', 1)
  log_recent(meta, recent, 'type', 'participant_removed', 'event_id', event_id, 'natural_key', natural_key,
    'participant_id', participant)
  notify(room, 'type', 'participant_removed', 'version', version,
    'participant_id', participant, 'player_count', redis.call('ZCARD', lb))
  return 1
end

-- ARGV: event_id, natural_key, participant_id, nickname, score, reached_at_ms (when they reached it)
-- The host put a removed player back: on the board with the score they had. A player on the board
-- already (a stale or repeated restore) stays as they are.
function APPLY.apply_participant_restored(keys, argv)
  assert(#argv == 6, 'apply_participant_restored: expected 6 ARGV, got ' .. #argv)
  local lb, applied, meta, room, names, recent = unpack(keys)
  local event_id, natural_key, participant, nickname = argv[1], argv[2], argv[3], argv[4]
  local score = as_int(argv[5], 'score')
  local at_ms = as_int(argv[6], 'reached_at_ms')

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end
  -- before any write: a score out of range changes nothing
  local composite = compose(score, reached_since(meta_epoch(meta), at_ms))

  redis.call('SADD', applied, event_id, natural_key)
  if not redis.call('ZSCORE', lb, participant) then redis.call('ZADD', lb, exact(composite), participant) end
  redis.call('HSET', names, participant, nickname)
  local version = redis.call('HINCRBY', meta, 'version', 1)
  log_recent(meta, recent, 'type', 'participant_restored', 'event_id', event_id, 'natural_key', natural_key,
    'participant_id', participant, 'points', score, 'at_ms', exact(at_ms))
  redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'participant_restored', 'version', version,
    'participant_id', participant, 'nickname', nickname, 'player_count', redis.call('ZCARD', lb))
  return 1
end

-- ARGV: event_id, natural_key, question_id, deadline (ISO 8601), added_s
-- The host gave the open question more time: the room hears its new deadline; the board does not
-- move. An extension of a question closed since (a late delivery) is only marked applied.
function APPLY.apply_question_extended(keys, argv)
  assert(#argv == 5, 'apply_question_extended: expected 5 ARGV, got ' .. #argv)
  local lb, applied, meta, room = unpack(keys)
  local event_id, natural_key, question_id, deadline, added_s = unpack(argv)

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end

  redis.call('SADD', applied, event_id, natural_key)
  if redis.call('HGET', meta, 'open_question') ~= question_id then return 1 end
  redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'question_extended',
    'version', redis.call('HGET', meta, 'version') or '0', 'question_id', question_id, 'deadline', deadline,
    'added_s', added_s)
  return 1
end

-- ARGV: event_id, natural_key, question_id, position, data (the question as JSON, for the room)
function APPLY.apply_question_opened(keys, argv)
  assert(#argv == 5, 'apply_question_opened: expected 5 ARGV, got ' .. #argv)
  local lb, applied, meta, room, names, recent, pending, results = unpack(keys)
  local event_id, natural_key, question_id, position, data = unpack(argv)

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end

  redis.call('SADD', applied, event_id, natural_key)
  redis.call('HSET', meta, 'open_question', question_id)
  -- The last close's answers stay readable until the next close; without a complete last close, the
  -- answers kept are of no use.
  if redis.call('HEXISTS', results, '_done') == 1 then
    redis.call('HSET', results, '_after', question_id)
    redis.call('HDEL', results, '_question', '_points')
  else
    redis.call('DEL', results)
  end
  -- The question's points (a close tells a player who did not answer whether their streak broke); a
  -- question whose data does not say is not tracked (its close asks PostgreSQL), never failing here.
  local decoded, question = pcall(cjson.decode, data)
  local points = decoded and type(question) == 'table' and tonumber(question.points)
  if points and points == math.floor(points) then
    redis.call('HSET', results, '_question', question_id, '_points', exact(points))
  end
  log_recent(meta, recent, 'type', 'question_opened', 'event_id', event_id, 'natural_key', natural_key,
    'question_id', question_id)
  notify(room, 'type', 'question_opened',
    'version', redis.call('HGET', meta, 'version') or '0', 'question_id', question_id, 'position', position,
    'data', data)
  return 1
end

-- ARGV: event_id, natural_key, question_id, position, data (the result as JSON, for the room)
function APPLY.apply_question_closed(keys, argv)
  assert(#argv == 5, 'apply_question_closed: expected 5 ARGV, got ' .. #argv)
  local lb, applied, meta, room, names, recent, pending, results = unpack(keys)
  local event_id, natural_key, question_id, position, data = unpack(argv)

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end

  redis.call('SADD', applied, event_id, natural_key)
  if redis.call('HGET', meta, 'open_question') == question_id then
    release_answers(lb, pending, meta_epoch(meta))
    redis.call('HDEL', meta, 'open_question')
    if redis.call('HGET', results, '_question') == question_id then
      redis.call('HSET', results, '_done', question_id, '_done_points', redis.call('HGET', results, '_points'))
      redis.call('HDEL', results, '_after')
    else  -- not tracked whole: nothing kept is of use to a close from now on
      redis.call('DEL', results)
    end
  end
  local version = redis.call('HINCRBY', meta, 'version', 1)
  log_recent(meta, recent, 'type', 'question_closed', 'event_id', event_id, 'natural_key', natural_key,
    'question_id', question_id)
  notify(room, 'type', 'question_closed', 'version', version,
    'question_id', question_id, 'position', position, 'data', data)
  return 1
end

-- ARGV: event_id, natural_key, expire_at_s, ended_at
function APPLY.apply_session_ended(keys, argv)
  assert(#argv == 4, 'apply_session_ended: expected 4 ARGV, got ' .. #argv)
  local lb, applied, meta, room = keys[1], keys[2], keys[3], keys[4]
  local event_id, natural_key = argv[1], argv[2]
  local expire_at = as_int(argv[3], 'expire_at_s')

  if redis.call('EXISTS', meta) == 0 then return -1 end
  if already_applied(applied, event_id, natural_key) then return 0 end

  redis.call('SADD', applied, event_id, natural_key)
  notify(room, 'type', 'session_ended',
    'version', redis.call('HGET', meta, 'version') or '0', 'ended_at', argv[4])
  if expire_at > 0 then
    redis.call('HSET', meta, 'expire_at', exact(expire_at))
    for _, key in ipairs(keys) do redis.call('EXPIREAT', key, exact(expire_at)) end
  end
  return 1
end
