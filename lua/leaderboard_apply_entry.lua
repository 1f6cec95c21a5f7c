-- Apply one entry_changed or entry_removed event: store the entry's resulting state if its version is
-- newer than the one held. Any delivery order and any number of redeliveries leave the same board,
-- and a removed entry cannot come back from a stale event (the removal keeps its version).
-- KEYS: cfg, z, entries, meta, recent, room (all tagged {b:<board>})
-- ARGV: player_id, version, tie_seq, score ('' when removed), reached_ms, display_name, period, metadata
--       (compact JSON, '' for none)
-- Returns 1 applied, 0 stale or duplicate, -1 the period is not cached here (rebuild it from PostgreSQL).
-- The rule itself is APPLY.leaderboard_apply_entry (leaderboard_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == 6, 'leaderboard_apply_entry: expected 6 KEYS, got ' .. #KEYS)
return APPLY.leaderboard_apply_entry(KEYS, ARGV)
