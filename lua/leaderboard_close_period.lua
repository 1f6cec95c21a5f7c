-- Apply period_closed: the period's keys expire at expire_at_s (read later, it is rebuilt from
-- PostgreSQL), and the room hears the final standings.
-- KEYS: z, entries, meta, recent, room (all tagged {b:<board>})
-- ARGV: period, expire_at_s, final (JSON of the final top N, for the room)
-- Returns 1.
-- The rule itself is APPLY.leaderboard_close_period (leaderboard_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == 5, 'leaderboard_close_period: expected 5 KEYS, got ' .. #KEYS)
return APPLY.leaderboard_close_period(KEYS, ARGV)
