-- Apply a run of one aggregate's events (a session's, or a board's) in one call, in order, each as its
-- one-event script would (common_lib.lua apply_batch; the functions are the library's APPLY, session_board_lib.lua
-- for a session, leaderboard_lib.lua for a board). Both libraries load this one file.
-- KEYS: every key the events use (all tagged with the one session or board, so one Cluster slot)
-- ARGV: key sets (JSON), events (JSON)[, room note fields (JSON)], as app/core/lua.py pack_batch builds them
-- Returns one reply per event, in order: 1 applied, 0 duplicate or stale, -1 rebuild first, or an error.
assert(#ARGV == 2 or #ARGV == 3, 'apply_batch: expected 2 or 3 ARGV, got ' .. #ARGV)
return apply_batch(APPLY, KEYS, ARGV)
