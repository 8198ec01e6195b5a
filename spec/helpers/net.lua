-- Shared fixtures for the bsdsocket specs: listening servers and connected
-- pairs over loopback, temporary Unix socket paths, a descriptor counter for
-- leak checks, and child Lua processes with a bounded run time.
-- Every fixture that opens something hands back a way to close it.
local S = require "bsdsocket"
local lfs = require "lfs"

local M = { S = S }

-- Closes every argument that is an open socket; ignores nil.
function M.closeall(...)
  for i = 1, select("#", ...) do
    local s = select(i, ...)
    if s then s:close() end
  end
end

-- Sends 64 KiB chunks on s without waiting until a send fails, at most
-- bound sends (default 1000), so that s's send queue (and its peer's
-- receive queue) is full; s's timeout stays as it was. Returns the failed
-- send's error code ("EAGAIN"), or nil when every send went through.
function M.fill(s, bound)
  local timeout = s:gettimeout()
  local chunk = ("f"):rep(65536)
  local code
  s:settimeout(0)
  for _ = 1, bound or 1000 do
    local n, _, c = s:send(chunk)
    if not n then code = c break end
  end
  s:settimeout(timeout)
  return code
end

-- A socket pair one of whose ends has descriptor number fd (the lowest
-- free number need not be fd at once: a descriptor closed elsewhere, say
-- by libkqueue's thread, may come free later): that end and its peer, or
-- nil after 64 pairs. The pairs made on the way go into held, to close.
function M.pair_with_fd(fd, held)
  for _ = 1, 64 do
    local x, y = assert(S.socketpair())
    if x:fileno() == fd then return x, y end
    if y:fileno() == fd then return y, x end
    held[#held + 1], held[#held + 2] = x, y
  end
  return nil
end

-- A TCP socket listening on host (default 127.0.0.1) port 0.
-- Returns the listener and the port the kernel chose.
function M.server(host, family)
  host = host or "127.0.0.1"
  family = family or (host:find(":", 1, true) and S.AF_INET6 or S.AF_INET)
  local srv = assert(S.socket(family, S.SOCK_STREAM))
  assert(srv:bind(host, 0))
  assert(srv:listen())
  return srv, srv:getsockname().port
end

-- A connected TCP pair over loopback: client, server side (accepted).
-- The listener is closed before returning.
function M.tcp_pair(host)
  local srv, port = M.server(host)
  local cli = assert(S.socket(srv:getsockname().family, S.SOCK_STREAM))
  assert(cli:connect(host or "127.0.0.1", port))
  local conn = assert(srv:accept())
  srv:close()
  return cli, conn
end

-- A UDP socket bound to host (default 127.0.0.1) port 0, and its port.
function M.udp(host)
  host = host or "127.0.0.1"
  local family = host:find(":", 1, true) and S.AF_INET6 or S.AF_INET
  local s = assert(S.socket(family, S.SOCK_DGRAM))
  assert(s:bind(host, 0))
  return s, s:getsockname().port
end

local function shquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
M.shquote = shquote

-- A private temporary directory (mode 700) for Unix socket paths.
-- dir:path(name) gives a path inside it; dir:remove() deletes every file
-- in it and the directory itself (safe to call twice).
function M.tmpdir()
  local base = os.tmpname()            -- creates a unique empty file
  os.remove(base)
  local dir = base .. ".d"
  assert(os.execute("mkdir -m 700 " .. shquote(dir)))
  local names = {}
  local d = {}
  function d.path(_, name)
    name = name or ("s" .. (#names + 1))
    names[#names + 1] = name
    return dir .. "/" .. name
  end
  function d.remove()
    if dir then
      os.execute("rm -rf " .. shquote(dir))
      dir = nil
      d.dir = nil
    end
  end
  d.dir = dir
  return d
end

-- A fresh Unix socket path and the function that removes it and its
-- directory: local path, cleanup = net.sockpath(); finally(cleanup)
function M.sockpath(name)
  local d = M.tmpdir()
  return d:path(name or "sock"), d.remove
end

-- This process's id: /proc/self/stat where there is a /proc, else the
-- parent of the shell that io.popen starts (POSIX sh's $PPID).
local function mypid()
  local f = io.open("/proc/self/stat")
  local text
  if f then
    text = f:read("a")
    f:close()
  else
    local p = assert(io.popen("echo $PPID"))
    text = p:read("a")
    p:close()
  end
  return assert(tonumber(text:match("^(%d+)")))
end
M.pid = mypid()

-- Lua code that prints the running process's id on a line of its own,
-- first thing (the children of spawn and child.spawn).
M.printpid = "do local f = io.open('/proc/self/stat') local t "
  .. "if f then t = f:read('a') f:close() else f = io.popen('echo $PPID') "
  .. "t = f:read('a') f:close() end "
  .. "io.write(t:match('^%d+'), '\\n') io.flush() end\n"

-- Why the running test cannot run on this build, or nil when it can: the
-- capability cap of S.platform (API.md's platform table) is missing. A
-- spec then says so: local why = net.lacks(...) if why then pending(why)
-- return end. Where the capability has a fallback, specs run unchanged.
function M.lacks(cap, what)
  local p = S.platform
  if p[cap] then return nil end
  if p.fallbacks then
    return ("not in the fallback build (%s turned off): %s"):format(cap, what)
  end
  return ("not on %s: %s"):format(p.os, what)
end

-- Whether a shell command exists here.
local function have(cmd)
  local p = assert(io.popen("command -v " .. cmd .. " 2>/dev/null"))
  local out = p:read("a")
  p:close()
  return out ~= ""
end
M.have = have

-- The Lua interpreter running the specs, for the child processes they
-- start: $BSDSOCKET_LUA, else the lowest negative index of arg (what
-- started busted: `lua5.4 /usr/bin/busted`), else lua5.4.
local function interpreter()
  local env = os.getenv("BSDSOCKET_LUA")
  if env and env ~= "" then return env end
  local i, cmd = -1, nil
  while arg and arg[i] do
    cmd = arg[i]
    i = i - 1
  end
  if cmd and cmd:match("lua") then
    -- a relative path (build/lua55/bin/lua) must work from any directory
    if cmd:match("/") and not cmd:match("^/") then
      local pwd = os.getenv("PWD")
      if pwd and pwd ~= "" then cmd = pwd .. "/" .. cmd end
    end
    return cmd
  end
  return "lua5.4"
end
M.lua = shquote(interpreter())

-- busted's script, for specs that run busted in a child: $BUSTED_SCRIPT,
-- else the one on PATH.
do
  local b = os.getenv("BUSTED_SCRIPT")
  if not b or b == "" then
    local p = assert(io.popen("command -v busted 2>/dev/null"))
    b = p:read("l")
    p:close()
  end
  M.busted = b and shquote(b) or "busted"
end

-- A shell prefix that kills what follows after `seconds`: timeout(1)
-- (Linux, FreeBSD), gtimeout (macOS with coreutils), else perl's alarm,
-- which exec keeps (macOS's own perl).
local timeoutcmd = have("timeout") and "timeout" or have("gtimeout") and "gtimeout"
function M.timeout(seconds)
  if timeoutcmd then return timeoutcmd .. " " .. seconds end
  return "perl -e 'alarm shift; exec @ARGV' " .. seconds
end

-- `<timeout> <lua>`: the start of a bounded child Lua command line
function M.luacmd(seconds, assigns)
  return M.timeout(seconds) .. (assigns and assigns ~= "" and " env " .. assigns or "")
    .. " " .. M.lua
end

-- The loopback interface's name, looked up: lo on Linux, lo0 on the BSDs
-- and macOS.
function M.loopback()
  for _, name in ipairs({ "lo", "lo0" }) do
    if S.if_nametoindex(name) then return name end
  end
  error("no loopback interface found (tried lo, lo0)")
end

-- Collects garbage until memory stops shrinking (finalizers may free more
-- objects), so that forgotten sockets are closed before descriptors are
-- looked at.
local function collect()
  local kb = math.huge
  for _ = 1, 10 do
    collectgarbage()
    local now = collectgarbage("count")
    if now >= kb then break end
    kb = now
  end
end

-- The open descriptors of this process: fd -> what it refers to, as /proc
-- shows it ("socket:[1234]", "pipe:[5]", "/dev/null"). Read in-process
-- with lfs (busted's own dependency), leaving out the one descriptor the
-- listing itself opens: a child process would see the parent between
-- fork and exec, which musl's system() spends with a pipe pair open.
-- Without /proc (macOS, FreeBSD) lsof lists them instead: the target is
-- then lsof's type, device or node and name ("IPv4 0x5f3e TCP ...").
-- BSDSOCKET_FDS=lsof picks lsof on Linux too (to check that path).
local uselsof = os.getenv("BSDSOCKET_FDS") == "lsof"
  or io.open("/proc/self/fd/0") == nil
M.fdlister = uselsof and "lsof" or "/proc"

local function readtmp(cmd)
  local tmp = os.tmpname()
  os.execute(cmd .. " > " .. shquote(tmp) .. " 2>/dev/null")
  local f = assert(io.open(tmp))
  local text = f:read("a")
  f:close()
  os.remove(tmp)
  return text
end

-- lsof -F: a line per field; f: descriptor, t: type, d: device, i: node,
-- n: name. Descriptors other than numbers (cwd, txt, mem) are left out.
local function lsoffds()
  local text = readtmp(("lsof -n -P -w -p %d -F ftdin"):format(M.pid))
  local t, fd, parts = {}, nil, nil
  local function flush()
    if fd then t[fd] = table.concat(parts, " ") end
  end
  for line in text:gmatch("[^\n]+") do
    local k, v = line:sub(1, 1), line:sub(2)
    if k == "f" then
      flush()
      fd, parts = tonumber(v), {}
    elseif fd and (k == "t" or k == "d" or k == "i" or k == "n") then
      parts[#parts + 1] = v
    end
  end
  flush()
  return t
end

local function listfds()
  local t = {}
  if uselsof then
    t = lsoffds()
  else
    local dir = "/proc/" .. M.pid .. "/fd"
    for name in lfs.dir(dir) do
      local fd = tonumber(name)
      local target = fd and lfs.symlinkattributes(dir .. "/" .. name, "target")
      if target and target ~= dir then t[fd] = target end
    end
  end
  assert(next(t), "no descriptors listed for process " .. M.pid .. " (" .. M.fdlister .. ")")
  return t
end

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end
M.count = count

-- Leak checks that other specs cannot disturb:
--   local before = net.fds()
--   ... the code under test ...
--   assert.same({}, net.newfds(before))
-- net.fds() collects garbage and returns this process's descriptors (fd ->
-- target). net.newfds(before [, seconds]) returns the descriptors open now
-- that were not open to the same thing in `before` (a sorted list of
-- "fd -> target"; {} when nothing leaked), and the table of all open now.
-- Descriptors closed meanwhile, by the test or by garbage that other specs
-- left behind, do not count, and a leaked socket that took over a number
-- freed meanwhile still counts (its target, socket:[inode], differs). While
-- something looks leaked it looks again, garbage collected, for up to
-- `seconds` (default 2): the sandbox may release a closed descriptor a
-- moment late; a real leak stays.
function M.fds()
  collect()
  return listfds()
end

function M.newfds(before, seconds)
  local deadline = S.monotime() + (seconds or 2)
  while true do
    collect()
    local now, added = listfds(), {}
    for fd, target in pairs(now) do
      if before[fd] ~= target then added[#added + 1] = fd .. " -> " .. target end
    end
    if #added == 0 or S.monotime() >= deadline then
      table.sort(added)
      return added, now
    end
    M.sleep(0.05)
  end
end

-- The descriptors of `before` that are closed now (or now refer to something
-- else): fd -> the target they had. For specs that close descriptors on
-- purpose and check that they went.
function M.gonefds(before)
  collect()
  local now, gone = listfds(), {}
  for fd, target in pairs(before) do
    if now[fd] ~= target then gone[fd] = target end
  end
  return gone
end

-- Number of open descriptors of this process, garbage collected first, once
-- two readings agree (bounded). A count is disturbed by descriptors that
-- other specs' garbage closes meanwhile: leak checks use fds/newfds.
function M.fdcount()
  collect()
  local n = count(listfds())
  for _ = 1, 10 do
    M.sleep(0.02)
    local again = count(listfds())
    if again == n then break end
    n = again
  end
  return n
end

-- What descriptor fd of this process refers to, as /proc shows it
-- ("socket:[1234]", "/tmp/x", "pipe:[5]"), or nil when it is not open.
function M.fdtarget(fd)
  if uselsof then return lsoffds()[fd] end
  return (lfs.symlinkattributes("/proc/" .. M.pid .. "/fd/" .. fd, "target"))
end

-- Whether descriptor fd of this process is close-on-exec: its flags in
-- /proc/self/fdinfo, else whether a program it execs (python3, through
-- the shell) finds it open.
function M.cloexec(fd)
  local f = io.open("/proc/self/fdinfo/" .. fd)
  if f then
    local flags = f:read("a"):match("flags:%s*(%d+)")
    f:close()
    return (tonumber(flags, 8) & tonumber("2000000", 8)) ~= 0
  end
  local p = assert(io.popen(("python3 -c 'import os\n"
    .. "try:\n os.fstat(%d)\n print(\"open\")\n"
    .. "except OSError:\n print(\"closed\")' 2>&1"):format(fd)))
  local out = p:read("a")
  p:close()
  assert(out == "open\n" or out == "closed\n", out)
  return out == "closed\n"
end

-- Whether a target of net.fds / net.fdtarget is a socket, in either
-- lister's words ("socket:[1234]"; lsof's "sock ...", "IPv4 ...", "unix ...").
function M.issocket(target)
  return target ~= nil and (target:match("^socket:") or target:match("^sock ")
    or target:match("^IPv[46] ") or target:match("^unix ")) ~= nil
end

-- Sleep for seconds (a fraction is fine) without busy-waiting.
function M.sleep(seconds)
  os.execute("sleep " .. string.format("%.3f", seconds))
end

-- Environment that lets a child lua5.4 find the module from the repo root.
local function childenv()
  local cwd = os.getenv("PWD") or "."
  local build = os.getenv("BSDSOCKET_BUILD") or "build"
  if build:sub(1, 1) ~= "/" then build = cwd .. "/" .. build end
  return "LUA_PATH=" .. shquote(cwd .. "/lua/?.lua;" .. cwd .. "/lua/?/init.lua;;")
    .. " LUA_CPATH=" .. shquote(build .. "/?.so;;")
end
M.childenv = childenv

local function writefile(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function readfile(path)
  local f = io.open(path)
  if not f then return nil end
  local t = f:read("a")
  f:close()
  return t
end
M.readfile = readfile

-- Runs Lua code in a child `lua5.4` with the module on its path, killed
-- after `seconds` (default 10). Returns the child's output (stdout and
-- stderr together) and its exit status (true on success, like os.execute).
function M.run_lua(code, seconds)
  local d = M.tmpdir()
  local ok, out, status, how, rc = pcall(function()
    local script, outfile = d:path("child.lua"), d:path("out")
    writefile(script, code)
    local st, kind, n = os.execute(childenv() .. " " .. M.luacmd(seconds or 10)
      .. " " .. shquote(script) .. " > " .. shquote(outfile) .. " 2>&1")
    return readfile(outfile) or "", st, kind, n
  end)
  d:remove()
  if not ok then error(out, 0) end
  return out, status, how, rc
end

-- Starts Lua code in a child `lua5.4` in the background (killed after
-- `seconds`, default 10). The child's first line of output is its pid.
-- Returns a handle:
--   h.pid           the child lua process's id
--   h:output()      what it printed so far
--   h:wait(s)       waits up to s seconds for it to exit; true if it did
--   h:kill(sig)     sends a signal (default KILL) if it still runs
--   h:cleanup()     kills it if needed and removes its files (idempotent)
function M.spawn(code, seconds)
  local d = M.tmpdir()
  local script, outfile, donefile = d:path("child.lua"), d:path("out"), d:path("done")
  writefile(script, M.printpid .. code)
  os.execute("(" .. childenv() .. " " .. M.luacmd(seconds or 10) .. " " .. shquote(script)
    .. " > " .. shquote(outfile) .. " 2>&1; echo $? > " .. shquote(donefile) .. ") &")
  local h = {}
  -- wait (bounded) for the pid line
  local deadline = S.monotime() + 5
  repeat
    local out = readfile(outfile) or ""
    h.pid = tonumber(out:match("^(%d+)\n"))
    if not h.pid then M.sleep(0.02) end
  until h.pid or S.monotime() > deadline
  function h.output()
    return ((readfile(outfile) or ""):gsub("^%d+\n", "", 1))
  end
  function h.done()
    local t = readfile(donefile)
    return t and t:find("\n") and tonumber(t:match("%d+")) or nil
  end
  function h.wait(_, s)
    local limit = S.monotime() + (s or 10)
    while not h.done() and S.monotime() < limit do M.sleep(0.02) end
    return h.done() ~= nil
  end
  function h.kill(_, sig)
    if h.pid and not h.done() then
      os.execute("kill -" .. (sig or "KILL") .. " " .. h.pid .. " 2>/dev/null")
    end
  end
  function h.cleanup()
    if d.dir then
      h:kill("KILL")
      h:wait(5)
      d:remove()
    end
  end
  if not h.pid then
    h:cleanup()
    error("child did not start", 2)
  end
  return h
end

-- Runs f and returns its results and the seconds it took (monotonic).
function M.timed(f, ...)
  local t0 = S.monotime()
  local r = table.pack(f(...))
  local dt = S.monotime() - t0
  return dt, table.unpack(r, 1, r.n)
end

-- True on a little-endian machine.
M.little_endian = string.pack("=I2", 1) == string.pack("<I2", 1)

return M
