-- The rate limits of app/web/ratelimits.py, counted as the `limits` library counts them (its sliding
-- window counter, limits/resources/redis/lua_scripts/acquire_sliding_window.lua, on the same keys), so
-- the library's own reads (`test`, the window stats of a 429's Retry-After) see every hit made here.
-- It defines functions only and writes nothing.

-- Take `amount` from the budget of one limit: KEYS previous and current window, `limit` per
-- `expiry_ms`. True when taken; false (nothing taken) when the budget is spent.
local function acquire_sliding_window(previous, current, limit, expiry_ms, amount)
  if amount > limit then
    return false
  end
  local current_ttl = tonumber(redis.call('pttl', current))
  if current_ttl > 0 and current_ttl < expiry_ms then
    -- The current window ended: it becomes the previous one.
    redis.call('rename', current, previous)
    redis.call('set', current, 0, 'PX', current_ttl + expiry_ms)
  end
  local previous_count = tonumber(redis.call('get', previous)) or 0
  local previous_ttl = tonumber(redis.call('pttl', previous)) or 0
  local current_count = tonumber(redis.call('get', current)) or 0
  current_ttl = tonumber(redis.call('pttl', current)) or 0
  if previous_ttl <= 0 then previous_ttl = 0 end
  if current_ttl <= 0 then current_ttl = 0 end
  local weighted_count = math.floor(previous_count * previous_ttl / expiry_ms) + current_count
  if (weighted_count + amount) > limit then
    return false
  end
  if redis.call('exists', current) == 1 then
    redis.call('incrby', current, amount)
  else
    redis.call('set', current, amount, 'PX', expiry_ms * 2)
  end
  return true
end
