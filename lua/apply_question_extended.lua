-- Apply one question_extended event (the host gave the open question more time): the room
-- hears the new deadline; the board does not move.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, question_id, deadline, added_s
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_question_extended (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_question_extended: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_question_extended(KEYS, ARGV)
