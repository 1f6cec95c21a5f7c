-- wrk script of the ingest benchmark: cycles through pre-made requests, one per line of a file:
--   <path>\t<bearer token or ->\t<json body>      (POST)   or   <path>                 (GET)
-- Usage: wrk -t1 -c64 -d60s -s wrk_requests.lua http://127.0.0.1:PORT -- requests.tsv [stop_after]
-- With stop_after, the thread stops once that many responses came back and prints WRK_STOPPED: wrk
-- itself runs on until -d, so the caller interrupts it then (SIGINT: wrk prints its totals).
-- Prints one JSON line with the totals and the latency percentiles (microseconds) at the end.
local requests = {}
local index = 0
local threads = {}
local stop_after = nil
local responses = 0
statuses = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  stop_after = tonumber(args[2])
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local path, token, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
    if path then
      local headers = {["Content-Type"] = "application/json"}
      if token ~= "-" then headers["Authorization"] = "Bearer " .. token end
      requests[#requests + 1] = wrk.format("POST", path, headers, body)
    else
      requests[#requests + 1] = wrk.format("GET", line)
    end
  end
  file:close()
end

function request()
  index = index + 1
  if index > #requests then index = 1 end
  return requests[index]
end

sample = ""

function response(status, _, body)
  statuses[status] = (statuses[status] or 0) + 1
  responses = responses + 1
  if stop_after and responses == stop_after then
    io.write("WRK_STOPPED\n")
    io.flush()
    wrk.thread:stop()
  end
  if status >= 300 and sample == "" then sample = string.format("%d %s", status, body:sub(1, 300)) end
end

function done(summary, latency, _)
  local parts = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses") or {}) do
      parts[#parts + 1] = string.format('"%d":%d', status, count)
    end
  end
  io.write('\nWRK_STATUSES {' .. table.concat(parts, ",") .. '}\n')
  for _, thread in ipairs(threads) do
    local first = thread:get("sample")
    if first and first ~= "" then io.write('WRK_FIRST_ERROR ' .. first:gsub("\n", " ") .. '\n') end
  end
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"lat_mean":%.1f,"lat_p50":%d,"lat_p95":%d,"lat_p99":%d,"lat_max":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
