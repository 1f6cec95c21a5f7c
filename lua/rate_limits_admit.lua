-- Admit one request in one round trip (app/web/ratelimits.py `admit`): hit its rate limits in order,
-- stopping at the first refused, and between the first `before` of them (the address's) and the rest
-- (the user's) read the user's cached revocation instant (app/accounts/users.py): a token issued before
-- it, or no instant cached, stops there, so the user's budgets are spent only by a request that gets in.
-- KEYS: the previous and current window of each limit, then the revocation key
-- ARGV: before, issued_at_ms, then `limit` and `expiry_s` of each limit
-- Returns {0, instant or false}: every limit hit; {1, i}: limit i refused (those before it were hit);
-- {2, instant or false}: stopped by the revocation read after the first `before` limits.
assert(#KEYS % 2 == 1, 'rate_limits_admit: expected 2 KEYS per limit and the revocation key, got ' .. #KEYS)
local count = (#KEYS - 1) / 2
assert(#ARGV == 2 + 2 * count, 'rate_limits_admit: expected ' .. (2 + 2 * count) .. ' ARGV, got ' .. #ARGV)
local before = as_int(ARGV[1], 'before')
local issued_at_ms = as_int(ARGV[2], 'issued_at_ms')
local instant = false

for i = 1, count do
  if i == before + 1 then
    instant = redis.call('get', KEYS[#KEYS])
    if not instant or issued_at_ms < as_int(instant, 'revocation instant') then
      return {2, instant}
    end
  end
  local limit = as_int(ARGV[1 + 2 * i], 'limit')
  local expiry_ms = as_int(ARGV[2 + 2 * i], 'expiry_s') * 1000
  if not acquire_sliding_window(KEYS[2 * i - 1], KEYS[2 * i], limit, expiry_ms, 1) then
    return {1, i}
  end
end
if before >= count then
  instant = redis.call('get', KEYS[#KEYS])
  if not instant or issued_at_ms < as_int(instant, 'revocation instant') then
    return {2, instant}
  end
end
return {0, instant}
