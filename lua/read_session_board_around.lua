-- A participant's rank and the players around it, read atomically.
-- KEYS: lb, meta, names (all tagged {session})
-- ARGV: participant_id, around
-- Returns {-1} when the session has no board here, {0} when the participant is not on it, else
-- {version, total_players, first_rank (1-based), participant_1, score_1, nickname_1, ...}.
assert(#KEYS == 3, 'read_session_board_around: expected 3 KEYS, got ' .. #KEYS)
assert(#ARGV == 2, 'read_session_board_around: expected 2 ARGV, got ' .. #ARGV)
local lb, meta, names = KEYS[1], KEYS[2], KEYS[3]
local participant = ARGV[1]
local around = as_int(ARGV[2], 'around')
if around < 0 then error('ERR around must be >= 0') end

if redis.call('EXISTS', meta) == 0 then return {-1} end
local rank = redis.call('ZREVRANK', lb, participant)
if not rank then return {0} end
local first = math.max(0, rank - around)
local reply = {as_int(redis.call('HGET', meta, 'version') or '0', 'version'), redis.call('ZCARD', lb), first + 1}
local page = redis.call('ZREVRANGE', lb, first, rank + around, 'WITHSCORES')
return append_entries(reply, page, names)
