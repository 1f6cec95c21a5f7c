-- Swap a board rebuilt from a PostgreSQL snapshot in for the live one, atomically.
-- The rebuild read `mark` = meta.recent_seq before taking its snapshot, so every event applied
-- live up to the mark is in the snapshot. Events applied live after the mark and absent from the
-- snapshot (committed after it) are replayed from `recent` onto the rebuilt board; the snapshot's
-- events are marked applied so later deliveries of them are skipped.
-- The room is told (a `board_rebuilt` notification): events the snapshot covered are duplicates
-- from now on, so their own notifications will never be sent, and its sockets need a fresh snapshot.
-- KEYS: lb, applied, meta, recent, rebuilt_lb, rebuilt_applied, room (all tagged {session})
-- ARGV: epoch_ms, mark, snapshot_version
-- rebuilt_applied always holds the member 'session', so its absence means the keys were lost.
-- Returns {1, version, replayed} swapped, {-2, reason} the log no longer covers the mark (rebuild again).
assert(#KEYS == 7, 'swap_rebuilt_board: expected 7 KEYS, got ' .. #KEYS)
assert(#ARGV == 3, 'swap_rebuilt_board: expected 3 ARGV, got ' .. #ARGV)
local lb, applied, meta, recent, rebuilt_lb, rebuilt_applied, room = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5],
  KEYS[6], KEYS[7]
local epoch = as_int(ARGV[1], 'epoch_ms')
local mark = as_int(ARGV[2], 'mark')
local snapshot_version = as_int(ARGV[3], 'snapshot_version')

if redis.call('EXISTS', rebuilt_applied) == 0 then return {-2, 'the rebuilt keys vanished (flushed?)'} end
local current = as_int(redis.call('HGET', meta, 'recent_seq') or '0', 'recent_seq')
if current < mark then return {-2, 'recent log was reset during the rebuild'} end
local entries = redis.call('XRANGE', recent, (mark + 1) .. '-0', '+')
if current > mark and (#entries == 0 or entries[1][1] ~= (mark + 1) .. '-0') then
  return {-2, 'recent log was trimmed past the mark'}
end
local known_epoch = redis.call('HGET', meta, 'epoch_ms')
if known_epoch and as_int(known_epoch, 'meta epoch_ms') ~= epoch then
  error('ERR epoch_ms ' .. exact(epoch) .. ' differs from the board\'s ' .. known_epoch)
end

-- Replays change only the rebuilt (temporary) key until the rename below.
local replayed = 0
for _, entry in ipairs(entries) do
  local f = {}
  for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
  if redis.call('SISMEMBER', rebuilt_applied, f.event_id) == 0 then
    local reached = reached_since(epoch, as_int(f.at_ms, 'at_ms'))
    local composite
    if f.type == 'answer_scored' then
      composite = after_points(rebuilt_lb, f.participant_id, as_int(f.points, 'points'), reached)
    else
      composite = after_join(rebuilt_lb, f.participant_id, reached)
    end
    if composite then redis.call('ZADD', rebuilt_lb, exact(composite), f.participant_id) end
    replayed = replayed + 1
  end
end

if redis.call('EXISTS', rebuilt_lb) == 1 then
  redis.call('RENAME', rebuilt_lb, lb)
else
  redis.call('DEL', lb)
end
redis.call('SUNIONSTORE', applied, applied, rebuilt_applied)
redis.call('DEL', rebuilt_applied)
local version = as_int(redis.call('HGET', meta, 'version') or '0', 'version')
if snapshot_version > version then version = snapshot_version end
version = version + 1
redis.call('HSET', meta, 'version', version, 'epoch_ms', exact(epoch), 'recent_seq', current)
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'board_rebuilt', 'version', version)
-- RENAME carried the temporary key's TTL: the board lives exactly as long as its dedupe state.
local expire_at = redis.call('HGET', meta, 'expire_at')
for _, key in ipairs({lb, applied, meta, room}) do
  if expire_at then redis.call('EXPIREAT', key, expire_at) else redis.call('PERSIST', key) end
end
return {1, version, replayed}
