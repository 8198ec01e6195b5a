-- Loaded before every spec file (.busted's helper). busted keeps only the
-- last function given to finally() in a test; the specs give several (kill
-- this child, close that socket), and a child left running holds its
-- io.popen pipe, whose close then waits for the child's own timeout. Here
-- finally() keeps every function and runs them all after the test, last
-- given first, each even if one before it fails; the first error counts.
local busted = require "busted"

busted.subscribe({ "test", "start" }, function(element)
  local env = element.env
  local keep = env and env.finally
  if not keep then return nil, true end
  local list = {}
  env.finally = function(fn)
    list[#list + 1] = fn
    keep(function()
      local first
      for i = #list, 1, -1 do
        local ok, err = pcall(list[i])
        if not ok and first == nil then first = err end
      end
      list = {}
      if first ~= nil then error(first, 0) end
    end)
  end
  return nil, true
end, { priority = 1 })

-- BSDSOCKET_TEST_TIMES=FILE: each test's wall seconds and name appended to
-- FILE, to find the slow tests of a parallel run (.ci/specs)
local times = os.getenv("BSDSOCKET_TEST_TIMES")
if times then
  local clock, started = require("bsdsocket").monotime, {}
  busted.subscribe({ "test", "start" }, function(element)
    started[element] = clock()
    return nil, true
  end)
  busted.subscribe({ "test", "end" }, function(element)
    local f = io.open(times, "a")
    if f and started[element] then
      f:write(("%7.2f %s: %s\n"):format(clock() - started[element],
        element.trace and element.trace.short_src or "?", element.name))
      f:close()
    end
    return nil, true
  end)
end
