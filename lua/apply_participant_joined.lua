-- Apply one participant_joined event: the player appears on the board with 0 points.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, participant_id, nickname, joined_at_ms
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_participant_joined (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_participant_joined: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_participant_joined(KEYS, ARGV)
