-- Apply board_created or board_updated: the board's configuration as of `revision`, never an older one.
-- KEYS: cfg, room (tagged {b:<board>})
-- ARGV: revision, sort_order, max_entries ('' when none)
-- Returns 1 applied, 0 stale or duplicate.
-- The rule itself is APPLY.leaderboard_apply_config (leaderboard_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == 2, 'leaderboard_apply_config: expected 2 KEYS, got ' .. #KEYS)
return APPLY.leaderboard_apply_config(KEYS, ARGV)
