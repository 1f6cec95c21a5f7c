-- Apply one participant_restored event (the host put a removed player back): the player is on
-- the board again with the score they had; the room hears it.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, participant_id, nickname, score, reached_ms
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_participant_restored (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_participant_restored: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_participant_restored(KEYS, ARGV)
