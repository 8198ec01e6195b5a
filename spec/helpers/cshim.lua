-- A small C shared object built at test time, for a child's LD_PRELOAD:
-- what plain Lua cannot do (install a signal handler without SA_RESTART,
-- make getaddrinfo slow on purpose). Built with $CC (or cc) in a private
-- temporary directory.
--
--   local shim = cshim.new("name", C_SOURCE, "-ldl")
--   shim:path()     the .so, built on first use; nil without a C compiler
--   shim:remove()   deletes the directory (a spec file's teardown calls it)
local net = require "helpers.net"

local M = {}

function M.new(name, source, libs)
  local built, dir                       -- built: the path, or false
  local shim = {}
  function shim.path()
    if built ~= nil then return built or nil end
    dir = net.tmpdir()
    local src, so = dir:path(name .. ".c"), dir.dir .. "/" .. name .. ".so"
    local f = assert(io.open(src, "w"))
    f:write(source)
    f:close()
    local cc = os.getenv("CC") or "cc"
    built = os.execute(("%s -shared -fPIC -o %s %s %s 2>/dev/null"):format(
      cc, net.shquote(so), net.shquote(src), libs or "")) and so or false
    return built or nil
  end
  function shim.remove()
    if dir then dir:remove() end
  end
  return shim
end

return M
