-- Swap a board rebuilt from a PostgreSQL snapshot in for the live one, atomically.
-- The rebuild read `mark` = meta.recent_seq before taking its snapshot, so every change applied
-- live up to the mark is in the snapshot. Changes applied live after the mark and absent from the
-- snapshot (committed after it) are replayed from `recent` onto the rebuilt keys, in order: answers
-- held while their question is open, joins, questions opened and closed (a close releases the held
-- answers), players removed and put back (with the score they had). The snapshot's facts are
-- marked applied, so later deliveries of them are skipped.
-- The room is told (a `board_rebuilt` notification): events the snapshot covered are duplicates
-- from now on, so their own notifications will never be sent, and its sockets need a fresh snapshot.
-- KEYS: lb, applied, meta, room, names, recent, pending, results, rebuilt_lb, rebuilt_applied,
--       rebuilt_pending (all tagged {session})
-- ARGV: epoch_ms, mark, snapshot_version, open_question ('' when none), expire_at_s (0: never),
--       rebuilds (meta.rebuilds, read with the mark)
-- rebuilt_applied always holds the member 'session', so its absence means the keys were lost.
-- Every swap bumps meta.rebuilds: one overtaken by another's swap (the web's read and the worker's apply
-- can both find a board missing) drops its keys and swaps nothing (common_lib.lua swap_refusal).
-- Returns {1, version, replayed} swapped, {0, version, 0} overtaken by another rebuild's swap,
-- {-2, reason} the log no longer covers the mark (rebuild again).
assert(#KEYS == 11, 'swap_rebuilt_session_board: expected 11 KEYS, got ' .. #KEYS)
assert(#ARGV == 6, 'swap_rebuilt_session_board: expected 6 ARGV, got ' .. #ARGV)
local lb, applied, meta, room, names, recent, pending = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local results = KEYS[8]
local rebuilt_lb, rebuilt_applied, rebuilt_pending = KEYS[9], KEYS[10], KEYS[11]
local epoch = as_int(ARGV[1], 'epoch_ms')
local mark = as_int(ARGV[2], 'mark')
local snapshot_version = as_int(ARGV[3], 'snapshot_version')
local open_question = ARGV[4]
local expire_at = as_int(ARGV[5], 'expire_at_s')
local rebuilds = as_int(ARGV[6], 'rebuilds')

if redis.call('EXISTS', rebuilt_applied) == 0 then return {-2, 'the rebuilt keys vanished (flushed?)'} end
local refusal, current, entries = swap_refusal(meta, recent, mark, rebuilds,
  {rebuilt_lb, rebuilt_applied, rebuilt_pending})
if refusal then return refusal end
local known_epoch = redis.call('HGET', meta, 'epoch_ms')
if known_epoch and as_int(known_epoch, 'meta epoch_ms') ~= epoch then
  error('ERR epoch_ms ' .. exact(epoch) .. ' differs from the board\'s ' .. known_epoch)
end

-- Replays change only the rebuilt (temporary) keys until the renames below.
local replayed = 0
for _, entry in ipairs(entries) do
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  if redis.call('SISMEMBER', rebuilt_applied, f.natural_key or f.event_id) == 0 then
    if f.type == 'answer_scored' then
      local points, at_ms = as_int(f.points, 'points'), as_int(f.at_ms, 'at_ms')
      if f.question_id == open_question then
        hold_answer(rebuilt_pending, f.participant_id, points, at_ms)
      else
        local composite = after_points(rebuilt_lb, f.participant_id, points, reached_since(epoch, at_ms))
        redis.call('ZADD', rebuilt_lb, exact(composite), f.participant_id)
      end
    elseif f.type == 'participant_joined' then
      local composite = after_join(rebuilt_lb, f.participant_id, reached_since(epoch, as_int(f.at_ms, 'at_ms')))
      if composite then redis.call('ZADD', rebuilt_lb, exact(composite), f.participant_id) end
    elseif f.type == 'participant_removed' then
      redis.call('ZREM', rebuilt_lb, f.participant_id)
      redis.call('HDEL', rebuilt_pending, f.participant_id)
    elseif f.type == 'participant_restored' then
      if not redis.call('ZSCORE', rebuilt_lb, f.participant_id) then
        local composite = compose(as_int(f.points, 'points'), reached_since(epoch, as_int(f.at_ms, 'at_ms')))
        redis.call('ZADD', rebuilt_lb, exact(composite), f.participant_id)
      end
    elseif f.type == 'question_opened' then
      open_question = f.question_id
    elseif f.type == 'question_closed' and f.question_id == open_question then
      release_answers(rebuilt_lb, rebuilt_pending, epoch)
      open_question = ''
    end
    replayed = replayed + 1
  end
end

-- The answers kept for close frames may lack what the rebuild found: closes ask PostgreSQL until the
-- next question opens.
redis.call('DEL', results)
for _, pair in ipairs({{rebuilt_lb, lb}, {rebuilt_pending, pending}}) do
  if redis.call('EXISTS', pair[1]) == 1 then redis.call('RENAME', pair[1], pair[2]) else redis.call('DEL', pair[2]) end
end
-- The snapshot's members join the live ones: the smaller set is added to the larger, which becomes
-- `applied` (no copy of a million members that are there already; the set let go is freed lazily).
local function add_members(from, into)
  local cursor = '0'
  repeat
    local page = redis.call('SSCAN', from, cursor, 'COUNT', 1000)
    cursor = page[1]
    if #page[2] > 0 then redis.call('SADD', into, unpack(page[2])) end
  until cursor == '0'
end
if redis.call('SCARD', applied) >= redis.call('SCARD', rebuilt_applied) then
  add_members(rebuilt_applied, applied)
  redis.call('UNLINK', rebuilt_applied)
else
  add_members(applied, rebuilt_applied)
  redis.call('UNLINK', applied)
  redis.call('RENAME', rebuilt_applied, applied)
end
local version = as_int(redis.call('HGET', meta, 'version') or '0', 'version')
if snapshot_version > version then version = snapshot_version end
version = version + 1
redis.call('HSET', meta, 'version', version, 'epoch_ms', exact(epoch), 'recent_seq', current,
  'rebuilds', rebuilds + 1)
if open_question ~= '' then redis.call('HSET', meta, 'open_question', open_question)
else redis.call('HDEL', meta, 'open_question') end
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'board_rebuilt', 'version', version)
-- An ended session's keys keep their expiry (RENAME carried the temporary keys' own TTL).
if expire_at > 0 then redis.call('HSET', meta, 'expire_at', exact(expire_at)) end
for _, key in ipairs({lb, applied, meta, room, names, recent, pending}) do
  if expire_at > 0 then redis.call('EXPIREAT', key, exact(expire_at)) else redis.call('PERSIST', key) end
end
return {1, version, replayed}
