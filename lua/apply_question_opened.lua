-- Apply one question_opened event: answers to this question are held until it closes.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, question_id, position, data (the question as JSON, for the room)
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_question_opened (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_question_opened: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_question_opened(KEYS, ARGV)
