-- What every library of lua/ shares, prepended before it (app/lua.py script_source): stream bounds
-- and exact integers. It defines values and functions only and writes nothing.
local ROOM_MAXLEN = '1000'
local RECENT_MAXLEN = '10000'

local function as_int(text, what)
  local n = tonumber(text)
  if n == nil or n ~= math.floor(n) then
    error('ERR ' .. what .. ' must be an integer, got ' .. tostring(text))
  end
  return n
end

-- Exact decimal text of an integral double: tostring() keeps only 14 significant digits.
local function exact(n)
  return string.format('%.0f', n)
end
