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
