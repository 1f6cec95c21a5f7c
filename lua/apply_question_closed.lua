-- Apply one question_closed event: every held answer of the question reaches the board at once, in
-- one new board version, then the room learns the result.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, question_id, position, data (the result as JSON, for the room)
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_question_closed (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_question_closed: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_question_closed(KEYS, ARGV)
