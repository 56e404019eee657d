-- common.lua — shared by the wrk scenarios (get.lua, put.lua) that
-- bench_http.mjs runs.
--
-- The driver passes its files and the database path after wrk's `--` as
-- key=value words (init(args) receives them in every thread):
--   path=/bench/   request path prefix (a database, or nginx's root)
--   ids=FILE       one document id (or file name) a line: GET picks from them
--   docs=FILE      one JSON body a line (no _id): PUT uses them
--   auth=B64       Basic credentials (base64 of name:password) sent with
--                  every request, when the server wants them
--   seed=N         seed of this phase (the driver gives each phase its own, so
--                  that two phases never PUT the same new ids); each thread
--                  gets its own stream from it
-- done() prints one line `BENCH_JSON {...}` with the figures the driver
-- needs (requests, duration, latency percentiles, errors), so the driver
-- never scrapes wrk's human-readable report.
local M = {}

function M.args(args)
  local o = {}
  for _, a in ipairs(args or {}) do
    local k, v = string.match(a, "^([%w_]+)=(.*)$")
    if k then o[k] = v end
  end
  return o
end

function M.read_lines(file)
  local t = {}
  local f = assert(io.open(file, "r"))
  for line in f:lines() do
    if #line > 0 then t[#t + 1] = line end
  end
  f:close()
  assert(#t > 0, file .. " is empty")
  return t
end

-- 16 random hex digits: new ids in random order, as CouchDB's `random` uuids.
function M.random_id()
  return string.format("%04x%04x%04x%04x", math.random(0, 65535), math.random(0, 65535),
                       math.random(0, 65535), math.random(0, 65535))
end

-- Call from init(args): the phase's seed and this thread's number (M.setup).
function M.init(args)
  local o = M.args(args)
  if o.auth then wrk.headers["Authorization"] = "Basic " .. o.auth end
  math.randomseed((tonumber(o.seed) or 42) * 1009 + (thread_no or 0))
  return o
end

-- wrk calls setup(thread) once per thread in the main state.
local threads = 0
function M.setup(thread)
  threads = threads + 1
  thread:set("thread_no", threads)
end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end

return M
