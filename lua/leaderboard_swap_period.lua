-- Swap a board period rebuilt from a PostgreSQL snapshot in for the cached one, atomically.
-- The rebuild read `mark` = meta.recent_seq before its snapshot, so every change applied here up to
-- the mark is in the snapshot. For each player changed here after the mark, the newer of the two
-- versions is kept (entries are versioned states, so this merge is exact whatever the order).
-- KEYS: cfg, z, entries, meta, recent, periods, room, rebuilt_z, rebuilt_entries, rebuilt_meta
--       (all tagged {b:<board>})
-- ARGV: period, mark, expire_at_s (0: never), rebuilds (meta.rebuilds, read with the mark)
-- rebuilt_entries always holds the field '\30' (REBUILT_MARK, app/leaderboards/board/rebuild.py: a control
-- character, which no player id holds), so its absence means the rebuilt keys were lost.
-- Every swap bumps meta.rebuilds: one overtaken by another's swap drops its keys and swaps nothing
-- (common_lib.lua swap_refusal).
-- Returns {1, version, merged} swapped, {0, version, 0} overtaken by another rebuild's swap,
-- {-2, reason} the log no longer covers the mark (rebuild again).
assert(#KEYS == 10, 'leaderboard_swap_period: expected 10 KEYS, got ' .. #KEYS)
assert(#ARGV == 4, 'leaderboard_swap_period: expected 4 ARGV, got ' .. #ARGV)
local cfg, z, entries, meta, recent, periods, room = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local rebuilt_z, rebuilt_entries, rebuilt_meta = KEYS[8], KEYS[9], KEYS[10]
local period = ARGV[1]
local mark = as_int(ARGV[2], 'mark')
local expire_at = as_int(ARGV[3], 'expire_at_s')
local rebuilds = as_int(ARGV[4], 'rebuilds')

if redis.call('HEXISTS', rebuilt_entries, '\30') == 0 then return {-2, 'the rebuilt keys vanished (flushed?)'} end
local refusal, current, changed = swap_refusal(meta, recent, mark, rebuilds,
  {rebuilt_z, rebuilt_entries, rebuilt_meta})
if refusal then return refusal end

local merged = 0
for _, change in ipairs(changed) do
  local player = change[2][2]
  local live = entry_of(entries, player)
  if live and put_entry(cfg, rebuilt_z, rebuilt_entries, rebuilt_meta, player, live[1], live[2], live[3], live[4],
      live[5], metadata_of(entries, player)) then
    merged = merged + 1
  end
end

redis.call('HDEL', rebuilt_entries, '\30')
for _, pair in ipairs({{rebuilt_z, z}, {rebuilt_entries, entries}}) do
  if redis.call('EXISTS', pair[1]) == 1 then redis.call('RENAME', pair[1], pair[2]) else redis.call('DEL', pair[2]) end
end
local version = as_int(redis.call('HGET', meta, 'version') or '0', 'version') + 1
redis.call('HSET', meta, 'version', version, 'sum', redis.call('HGET', rebuilt_meta, 'sum') or '0',
  'recent_seq', current, 'rebuilds', rebuilds + 1)
redis.call('DEL', rebuilt_meta)
redis.call('SADD', periods, period)
for _, key in ipairs({z, entries, meta, recent}) do
  if expire_at > 0 then redis.call('EXPIREAT', key, exact(expire_at)) else redis.call('PERSIST', key) end
end
redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', 'type', 'board_rebuilt', 'period', period,
  'version', version)
return {1, version, merged}
