-- Apply one session_ended event: notify the room, then let every key of the session expire at
-- expire_at_s (0: never). A later delivery finds no meta, and the rebuild re-derives the dedupe
-- state from PostgreSQL.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, expire_at_s, ended_at
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_session_ended (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_session_ended: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_session_ended(KEYS, ARGV)
