-- Each given player's result of a closed question, for the room's close frames (room.py), read
-- atomically with the board the close left: what they answered (as answer_scored recorded it), their
-- score and their rank. The answers are `results` (session_board_lib.lua says when it is complete).
-- KEYS: results, lb (tagged {session})
-- ARGV: question_id, participant_id...
-- Returns {0} when `results` is not the complete answers of that closed question (ask PostgreSQL), else
-- {1, question_points, answer_1, rank_1, score_1, answer_2, ...}: an answer is "choice:correct:points:streak"
-- or '' (none), a rank counts from 0 and is -1 for a player not on the board.
assert(#KEYS == 2, 'read_question_results: expected 2 KEYS, got ' .. #KEYS)
assert(#ARGV >= 1, 'read_question_results: expected a question id')
local results, lb = KEYS[1], KEYS[2]
if redis.call('HGET', results, '_closed') ~= ARGV[1] then return {0} end
local reply = {1, as_int(redis.call('HGET', results, '_points'), 'question points')}
for i = 2, #ARGV do
  local rank = redis.call('ZREVRANK', lb, ARGV[i])
  reply[#reply + 1] = redis.call('HGET', results, ARGV[i]) or ''
  reply[#reply + 1] = rank or -1
  reply[#reply + 1] = rank and math.floor(tonumber(redis.call('ZSCORE', lb, ARGV[i])) / TIE) or 0
end
return reply
