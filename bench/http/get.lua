-- get.lua — GET a uniformly random document of the loaded set (or, for
-- nginx, the one static file) on every request.  Args: path=, ids=, seed=.
package.path = os.getenv("BENCH_HTTP_LUA") .. "/?.lua;" .. package.path
local common = require("common")
local ids, prefix

setup = common.setup
done = common.done

function init(args)
  local o = common.init(args)
  prefix = o.path
  ids = common.read_lines(o.ids)
end

function request()
  return wrk.format("GET", prefix .. ids[math.random(#ids)])
end
