-- put.lua — PUT a new document (random 16-hex-digit id, ~1 KiB body from the
-- pool) on every request.  Args: path=, docs=, seed=.
package.path = os.getenv("BENCH_HTTP_LUA") .. "/?.lua;" .. package.path
local common = require("common")
local docs, prefix
local headers = { ["Content-Type"] = "application/json" }

setup = common.setup
done = common.done

function init(args)
  local o = common.init(args)
  -- wrk.format sends the headers it is given instead of wrk.headers, so
  -- the credentials common.init set there are copied in.
  headers["Authorization"] = wrk.headers["Authorization"]
  prefix = o.path
  docs = common.read_lines(o.docs)
end

function request()
  return wrk.format("PUT", prefix .. common.random_id(), headers, docs[math.random(#docs)])
end
