-- One page of a board, read atomically so ranks, scores and version belong to one snapshot.
-- KEYS: lb, meta, names (all tagged {session})
-- ARGV: offset, limit
-- Returns {-1} when the session has no board here, else
-- {version, total_players, participant_1, score_1, nickname_1, participant_2, ...} in rank order.
assert(#KEYS == 3, 'read_session_board_page: expected 3 KEYS, got ' .. #KEYS)
assert(#ARGV == 2, 'read_session_board_page: expected 2 ARGV, got ' .. #ARGV)
local lb, meta, names = KEYS[1], KEYS[2], KEYS[3]
local offset = as_int(ARGV[1], 'offset')
local limit = as_int(ARGV[2], 'limit')
if offset < 0 or limit < 1 then error('ERR offset must be >= 0 and limit >= 1') end

if redis.call('EXISTS', meta) == 0 then return {-1} end
local reply = {as_int(redis.call('HGET', meta, 'version') or '0', 'version'), redis.call('ZCARD', lb)}
local page = redis.call('ZREVRANGE', lb, offset, offset + limit - 1, 'WITHSCORES')
return append_entries(reply, page, names)
