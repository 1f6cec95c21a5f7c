-- What every library of lua/ shares, prepended before it (app/core/lua.py script_source): stream bounds
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

-- The fields every room note of the event being applied ends with (its journey: clicked_ms, event_id and,
-- when traced, traceparent; apply_batch sets them from ARGV[3]); the libraries write room notes through
-- `notify`. Empty for the one-event scripts.
local NOTE_TRACE = {}

local function notify(room, ...)
  local fields = {...}
  for _, value in ipairs(NOTE_TRACE) do fields[#fields + 1] = value end
  return redis.call('XADD', room, 'MAXLEN', '~', ROOM_MAXLEN, '*', unpack(fields))
end

-- Apply one aggregate's events in one call (lua/apply_batch.lua; app/core/lua.py packs ARGV): ARGV[1] is a
-- JSON array of key sets (each a list of positions in KEYS), ARGV[2] a JSON array of events, each
-- [script, key set, its ARGV...], and an optional ARGV[3] a JSON array of each event's room note fields
-- (NOTE_TRACE). Every event runs in order through apply[script], the function its
-- one-event script calls, with its own keys and ARGV. An event whose function fails has written nothing
-- (each computes what can fail first) and answers its error; the events after it still run.
-- Returns one reply per event: the function's (1 applied, 0 duplicate or stale, -1 rebuild first) or an error.
local function apply_batch(apply, keys, argv)
  local keysets = {}
  for i, positions in ipairs(cjson.decode(argv[1])) do
    local set = {}
    for j, position in ipairs(positions) do set[j] = keys[position] end
    keysets[i] = set
  end
  local replies = {}
  local notes = argv[3] and cjson.decode(argv[3]) or {}
  for i, event in ipairs(cjson.decode(argv[2])) do
    NOTE_TRACE = notes[i] or {}
    local run, set = apply[event[1]], keysets[event[2]]
    if run == nil or set == nil then
      replies[i] = redis.error_reply('ERR apply_batch: no script ' .. tostring(event[1]) .. ' or key set ' .. tostring(event[2]))
    else
      local ok, reply = pcall(run, set, {unpack(event, 3)})
      if ok then
        replies[i] = reply
      else
        replies[i] = redis.error_reply(type(reply) == 'table' and tostring(reply.err) or tostring(reply))
      end
    end
  end
  NOTE_TRACE = {}
  return replies
end

-- Whether a rebuild may swap its keys in, given what it read from `meta` before its snapshot
-- (app/core/board.py, Mark): `mark` (recent_seq) and `rebuilds`. Returns the reply to give instead, or
-- nil, the log's present sequence and its entries after the mark (what the swap replays or merges).
-- {0, version, 0}: another rebuild swapped in since; its board, with what was applied after it, already
-- holds all this older snapshot has, so `temporaries` are dropped and nothing is swapped (an older
-- snapshot renamed over a newer one would lose what only the newer one holds).
-- {-2, reason}: the board or its log was reset or trimmed meanwhile: rebuild again.
local function swap_refusal(meta, recent, mark, rebuilds, temporaries)
  local swapped = as_int(redis.call('HGET', meta, 'rebuilds') or '0', 'rebuilds')
  if swapped < rebuilds then return {-2, 'the board was reset during the rebuild'} end
  if swapped > rebuilds then
    redis.call('UNLINK', unpack(temporaries))
    return {0, as_int(redis.call('HGET', meta, 'version') or '0', 'version'), 0}
  end
  local current = as_int(redis.call('HGET', meta, 'recent_seq') or '0', 'recent_seq')
  if current < mark then return {-2, 'recent log was reset during the rebuild'} end
  local entries = redis.call('XRANGE', recent, (mark + 1) .. '-0', '+')
  if current > mark and (#entries == 0 or entries[1][1] ~= (mark + 1) .. '-0') then
    return {-2, 'recent log was trimmed past the mark'}
  end
  return nil, current, entries
end
