-- Apply one answer_scored event, at most once. While its question is open (meta.open_question) the
-- answer is held in `pending`, invisible to every read, and the room only learns who answered and how
-- many have (nothing of the points); the close adds it to the board (apply_question_closed.lua). An answer whose question is
-- no longer open goes straight to the board.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, participant_id, nickname, points, answered_at_ms, question_id, choice,
--       correct (0|1), streak
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_answer_scored (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_answer_scored: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_answer_scored(KEYS, ARGV)
