-- Open sockets counted per client address or per user across web processes (app/web/rooms/slots.py).
-- It defines functions only and writes nothing.
--
-- One hash per address or user: field <process> holds that web process's open sockets there, field
-- <process>@ the end of its lease (ms, by Redis's clock). A process renews its leases while it lives;
-- the fields of one whose lease ended (it was killed) no longer count and are dropped when read.

local function now_ms()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- The open sockets of the processes whose lease has not ended; the others' fields are dropped.
local function live_total(slots, now)
  local fields = redis.call('HGETALL', slots)
  local counts, leases = {}, {}
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    if string.sub(name, -1) == '@' then
      leases[string.sub(name, 1, -2)] = tonumber(value)
    else
      counts[name] = tonumber(value)
    end
  end
  local total = 0
  for process, count in pairs(counts) do
    local lease = leases[process]
    if lease == nil or lease < now then
      redis.call('HDEL', slots, process, process .. '@')
    else
      total = total + count
    end
  end
  for process, _ in pairs(leases) do
    if counts[process] == nil then redis.call('HDEL', slots, process .. '@') end
  end
  return total
end
