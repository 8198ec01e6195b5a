-- Child processes with extra environment or shell set-up in front of the
-- usual command (LD_PRELOAD, ulimit), for specs that need more than
-- helpers/net.lua's run_lua and spawn. Used by faults_spec and load_spec.
local S = require "bsdsocket"
local net = require "helpers.net"

local M = {}

local readfile = net.readfile
M.readfile = readfile

-- A child lua5.4 with `prefix` (shell text: "LD_PRELOAD=/x.so", or
-- "ulimit -n 8192;") in front of the usual command inside its subshell;
-- like net.spawn, its first output line is its pid. Assignments that end
-- the prefix reach the Lua process only (`timeout N env VAR=... lua5.4`):
-- a fixture preloaded there is built for the Lua under test (musl-gcc in
-- `make check-musl`), which the shell and timeout may not share.
function M.spawn(prefix, code, seconds)
  local d = net.tmpdir()
  local script, outfile, donefile = d:path("child.lua"), d:path("out"), d:path("done")
  local f = assert(io.open(script, "w"))
  f:write(net.printpid, code)
  f:close()
  local shell, assigns = prefix:match("^(.-)%s*([%w_]+=.*)$")
  if not shell then shell, assigns = prefix, "" end
  os.execute("(" .. shell .. " " .. net.childenv() .. " " .. net.luacmd(seconds or 20, assigns) .. " "
    .. net.shquote(script) .. " > " .. net.shquote(outfile) .. " 2>&1; echo $? > "
    .. net.shquote(donefile) .. ") &")
  local h = {}
  local deadline = S.monotime() + 5
  repeat
    h.pid = tonumber((readfile(outfile) or ""):match("^(%d+)\n"))
    if not h.pid then net.sleep(0.02) end
  until h.pid or S.monotime() > deadline
  function h.output() return ((readfile(outfile) or ""):gsub("^%d+\n", "", 1)) end
  function h.status()
    local t = readfile(donefile)
    return t and t:find("\n") and tonumber(t:match("%d+")) or nil
  end
  function h.wait(_, s)
    local limit = S.monotime() + (s or 10)
    while not h.status() and S.monotime() < limit do net.sleep(0.02) end
    return h.status()
  end
  function h.signal(_, sig) os.execute("kill -" .. sig .. " " .. h.pid .. " 2>/dev/null") end
  function h.state()   -- the process state letter of /proc/PID/stat, or ps's
    local t = readfile("/proc/" .. h.pid .. "/stat")
    if t then return t:match("^%d+ %b() (%a)") end
    if io.open("/proc/self/stat") then return nil end   -- /proc, no such process
    local p = assert(io.popen("ps -o stat= -p " .. h.pid .. " 2>/dev/null"))
    local st = p:read("a")
    p:close()
    return st:match("^%s*(%a)")
  end
  function h.cleanup()
    if d.dir then
      if not h.status() then h:signal("KILL") end
      h:wait(5)
      d:remove()
    end
  end
  assert(h.pid, "child did not start")
  return h
end

return M
