-- Apply period_opened: the board's current period becomes `period`, unless a later one is current.
-- The new period's keys are not created here: its first entry, or a read, finds them missing and
-- builds them from PostgreSQL (so a replayed opening can never start a period empty).
-- KEYS: cfg, room (tagged {b:<board>})
-- ARGV: period, starts_at_ms
-- Returns 1 applied, 0 stale or duplicate.
-- The rule itself is APPLY.leaderboard_apply_period (leaderboard_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == 2, 'leaderboard_apply_period: expected 2 KEYS, got ' .. #KEYS)
return APPLY.leaderboard_apply_period(KEYS, ARGV)
