-- fd_passing.lua: a parent process accepts TCP connections and hands each
-- one to a worker process over a Unix socket (SCM_RIGHTS); the worker, a
-- separate process, serves it: it greets the client with its pid and echoes
-- every line back. The parent never reads a byte of the connections.
--
-- Run from a checkout (after `make`):
--   LUA_PATH="lua/?.lua;;" LUA_CPATH="build/?.so;;" lua5.4 examples/fd_passing.lua [PORT [COUNT]]
-- then, in another terminal:  nc 127.0.0.1 PORT
-- PORT 0 (the default) picks a free port; the first line printed names it.
-- COUNT connections are handed over before both processes exit (default: no end).
local S = require "bsdsocket"

-- This process's id: the peer credentials of a socketpair where the
-- platform gives a pid, else the parent of a shell (POSIX sh's $PPID).
local function mypid()
  local a, b = S.socketpair()
  local cred = a:getpeercred()
  a:close(); b:close()
  if cred and cred.pid then return cred.pid end
  local p = io.popen("echo $PPID")
  local pid = tonumber(p:read("a"))
  p:close()
  return pid
end

local function shellquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- The worker: connects to the parent's control socket, receives connections.
local function worker(path)
  local me = mypid()
  local ctl <close> = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
  assert(ctl:connect(path))
  assert(ctl:sendall(me .. "\n"))               -- who connected, for the parent
  while true do
    local data, _, anc = assert(ctl:recvmsg(1))
    if data == "" then break end                 -- the parent is done
    for _, conn in ipairs(anc.rights or {}) do
      conn:settimeout(30)
      conn:sendall(("worker %d: hello %s\n"):format(me, tostring(conn:getpeername())))
      local pending = ""
      while true do
        local chunk = conn:recv(4096)
        if not chunk or chunk == "" then break end
        pending = pending .. chunk
        for line in pending:gmatch("([^\n]*)\n") do
          conn:sendall(("worker %d: %s\n"):format(me, line))
        end
        pending = pending:match("[^\n]*$")
      end
      conn:close()
    end
  end
end

local function parent(port, count)
  local path = os.tmpname()
  os.remove(path)                                -- the name only: bind creates it
  local ctlsrv <close> = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
  assert(ctlsrv:bind(path))
  assert(ctlsrv:listen(1))
  local interp = arg[-1] or "lua5.4"
  local child = assert(io.popen(("%s %s worker %s"):format(
    shellquote(interp), shellquote(arg[0]), shellquote(path)), "w"))
  ctlsrv:settimeout(10)
  local ctl, err = ctlsrv:accept()
  os.remove(path)
  if not ctl then child:close(); error(err) end
  -- who connected: the kernel says (getpeercred), and the worker too
  local said = ctl:recv(32) or ""
  local cred = ctl:getpeercred()
  local wpid = cred and cred.pid or tonumber(said:match("^(%d+)\n"))

  local srv <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(srv:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
  assert(srv:bind("127.0.0.1", port))
  assert(srv:listen())
  print(("fd_passing: listening on %s (parent pid %d, worker pid %d)"):format(
    tostring(srv:getsockname()), mypid(), wpid))
  io.stdout:flush()

  local n = 0
  while not count or n < count do
    local conn, peer = srv:accept()
    if conn then
      n = n + 1
      assert(ctl:sendmsg("c", nil, { rights = { conn } }))
      conn:close()                               -- the worker holds its own copy now
      print(("fd_passing: connection %d from %s handed to worker %d"):format(n, tostring(peer), wpid))
      io.stdout:flush()
    end
  end
  ctl:close()                                    -- EOF tells the worker to finish
  child:close()                                  -- and waits for it
end

if arg[1] == "worker" then
  worker(arg[2])
else
  parent(tonumber(arg[1]) or 0, tonumber(arg[2]))
end
