-- Apply one participant_removed event (the host removed a player): the player leaves the board and
-- their held answer goes; the room hears it, so the player's own sockets close.
-- KEYS: lb, applied, meta, room, names, recent, pending, results (all tagged {session})
-- ARGV: event_id, natural_key, participant_id
-- Returns 1 applied, 0 duplicate, -1 the session has no board here (rebuild it from PostgreSQL first).
-- The rule itself is APPLY.apply_participant_removed (session_board_lib.lua), which the batch (apply_batch.lua) runs too.
assert(#KEYS == APPLY_KEYS, 'apply_participant_removed: expected 8 KEYS, got ' .. #KEYS)
return APPLY.apply_participant_removed(KEYS, ARGV)
