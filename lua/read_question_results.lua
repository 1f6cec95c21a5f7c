-- Each given player's result of a closed question, for the room's close frames (room.py), read
-- atomically with the board the close left: what they answered (as answer_scored recorded it), their
-- score and their rank. The answers are `results` (session_board_lib.lua says what it holds and when
-- it is complete): the question closed last, also after the next one opened.
-- KEYS: results, lb (tagged {session})
-- ARGV: question_id, participant_id...
-- Returns {0} when `results` cannot tell each given player's answer to that closed question (ask
-- PostgreSQL), else {1, question_points, answer_1, rank_1, score_1, answer_2, ...}: an answer is
-- "choice:correct:points:streak" or '' (none), a rank counts from 0 and is -1 for a player not on the board.
assert(#KEYS == 2, 'read_question_results: expected 2 KEYS, got ' .. #KEYS)
assert(#ARGV >= 1, 'read_question_results: expected a question id')
local results, lb = KEYS[1], KEYS[2]
local question = ARGV[1]
if redis.call('HGET', results, '_done') ~= question then return {0} end
local after = redis.call('HGET', results, '_after')
local reply = {1, as_int(redis.call('HGET', results, '_done_points'), 'question points')}
for i = 2, #ARGV do
  local answer = ''
  local kept = redis.call('HGET', results, ARGV[i])
  if kept then
    local bar = string.find(kept, '|', 1, true)
    local tag = bar and string.sub(kept, 1, bar - 1)
    if tag == question then
      answer = string.sub(kept, bar + 1)
    elseif not bar or tag == after then
      return {0}  -- they answered the question opened since: what they answered here is gone
    end  -- else an older question's answer: they did not answer this one
  end
  local rank = redis.call('ZREVRANK', lb, ARGV[i])
  reply[#reply + 1] = answer
  reply[#reply + 1] = rank or -1
  reply[#reply + 1] = rank and math.floor(tonumber(redis.call('ZSCORE', lb, ARGV[i])) / TIE) or 0
end
return reply
