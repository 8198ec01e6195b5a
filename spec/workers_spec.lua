-- luacheck: std +busted
-- --workers N of examples/echo_server_loop.lua and examples/http_server.lua:
-- connections are spread over the worker processes (which process holds
-- each accepted socket is read from /proc), and every worker exits with the
-- parent, even one killed with SIGKILL.
local S = require "bsdsocket"
local net = require "helpers.net"
-- the process tree and the sockets' owners are read from /proc (Linux)
local PROC = io.open("/proc/net/tcp") ~= nil
local NOPROC = "not on " .. S.platform.os .. ": the process and socket tables come from /proc"
local X = require "helpers.examples"

local BUILD = os.getenv("BSDSOCKET_BUILD") or "build"
local q = X.shquote

-- pid -> ppid of every process, from /proc/*/stat
local function processes()
  local t = {}
  local p = assert(io.popen("cat /proc/[0-9]*/stat 2>/dev/null"))
  for line in p:lines() do
    local pid, ppid = line:match("^(%d+) %(.*%) %a (%d+)")
    if pid then t[tonumber(pid)] = tonumber(ppid) end
  end
  p:close()
  return t
end

local function children(pid)
  local out = {}
  for p, pp in pairs(processes()) do
    if pp == pid then out[#out + 1] = p end
  end
  table.sort(out)
  return out
end

local function alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local stat = f:read("a")
  f:close()
  -- a process that ends between the open and the read reads as nothing
  if not stat or stat == "" then return false end
  return stat:match("^%d+ %(.*%) (%a)") ~= "Z"
end

-- socket inode -> pid, over the given processes
local function socketowners(pids)
  local owner = {}
  for _, pid in ipairs(pids) do
    local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd 2>/dev/null"))
    for inode in p:read("a"):gmatch("socket:%[(%d+)%]") do owner[inode] = pid end
    p:close()
  end
  return owner
end

-- the inode of the server's end of the connection whose client port is cport
local function serverinode(sport, cport)
  local want = (":%04X"):format(sport)
  local peer = (":%04X"):format(cport)
  for line in io.lines("/proc/net/tcp") do
    local loc, rem, inode = line:match("^%s*%d+: %x+(:%x+) %x+(:%x+) %x+ %x+:%x+ %x+:%x+ %x+%s+%d+%s+%d+%s+(%d+)")
    if loc == want and rem == peer then return inode end
  end
end

-- Starts an example with --workers n; returns the parent lua's pid, the
-- port, the pids of the workers it started, and a kill function.
-- opts.env: more environment (shell words); opts.stderr: a file for stderr
-- (else it joins stdout on the pipe).
local function start(script, args, n, opts)
  opts = opts or {}
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  -- HTTP_SERVER_IDLE: http_server keeps the idle connections open until the
  -- spec has looked at them (its 30 s default ran out on a loaded machine)
  local cmd = ("echo $$; exec env LUA_PATH='lua/?.lua;;' LUA_CPATH=%s HTTP_SERVER_IDLE=300 %s "
    .. net.luacmd(60) .. " examples/%s"
    .. " 127.0.0.1 0 %s --workers %d %s"):format(q(BUILD .. "/?.so;;"), opts.env or "", script,
    table.concat(words, " "), n, opts.stderr and "2>" .. q(opts.stderr) or "2>&1")
  local p = assert(io.popen(cmd, "r"))
  local tpid = tonumber(p:read("l"))
  local first = p:read("l") or ""
  local port = tonumber(first:match("listening on 127%.0%.0%.1:(%d+)"))
  local function kill(sig)
    os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", tpid))
  end
  if not port then
    kill()
    p:close()
    error("did not start: " .. first)
  end
  local lpid
  for _ = 1, 100 do                    -- timeout's child is the parent lua
    lpid = children(tpid)[1]
    if lpid and #children(lpid) >= n - 1 then break end
    os.execute("sleep 0.05")
  end
  local workers = children(lpid)
  -- and every one listening (a worker under a sanitizer starts slowly)
  local want = (":%04X"):format(port)
  for _ = 1, 200 do
    local listening = 0
    for line in io.lines("/proc/net/tcp") do
      local loc, state = line:match("^%s*%d+: %x+(:%x+) %x+:%x+ (%x+)")
      if loc == want and state == "0A" then listening = listening + 1 end
    end
    if listening >= n then break end
    os.execute("sleep 0.05")
  end
  return { tpid = tpid, lpid = lpid, port = port, workers = workers, pipe = p, kill = kill }
end

local function connect(port)
  local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  c:settimeout(10)
  assert(c:connect("127.0.0.1", port))
  return c
end

-- Which processes hold the server ends of the connections conns.
local function spread(h, conns)
  local owner = socketowners({ h.lpid, table.unpack(h.workers) })
  local count = {}
  for _, c in ipairs(conns) do
    local inode = serverinode(h.port, c:getsockname().port)
    local pid = inode and owner[inode]
    assert.is_truthy(pid, "no process holds the connection from port " .. c:getsockname().port)
    count[pid] = (count[pid] or 0) + 1
  end
  return count
end

local function waitgone(pids, seconds)
  local t0 = S.monotime()
  repeat
    local left = {}
    for _, pid in ipairs(pids) do if alive(pid) then left[#left + 1] = pid end end
    if #left == 0 then return true end
    os.execute("sleep 0.1")
  until S.monotime() - t0 > seconds
  return false
end

-- busted keeps only a test's last finally(): one that runs every undo
-- function given to the returned `later`, last first
local function cleanups()
  local undo = {}
  finally(function()
    for i = #undo, 1, -1 do pcall(undo[i]) end
  end)
  return function(f) undo[#undo + 1] = f end
end

-- the whole server gone: the parent lua (its workers follow it), then timeout
local function stop(h)
  if h.lpid then os.execute("kill -KILL " .. h.lpid .. " 2>/dev/null") end
  h.kill("KILL")
  h.pipe:close()
end

describe("--workers", function()
  it("echo_server_loop: 40 connections land on both of 2 processes; workers die with a KILLed parent", function()
    if not PROC then pending(NOPROC) return end
    local later = cleanups()
    local h = start("echo_server_loop.lua", {}, 2)
    later(function() stop(h) end)
    assert.equal(1, #h.workers)
    local conns = {}
    later(function() for _, c in ipairs(conns) do c:close() end end)
    for i = 1, 40 do
      local c = connect(h.port)
      conns[i] = c
      assert(c:sendall("ping " .. i))
      assert.equal("ping " .. i, c:recvall(#("ping " .. i)))
    end
    local count = spread(h, conns)
    assert.is_truthy(count[h.lpid], "the parent served none")
    assert.is_truthy(count[h.workers[1]], "the worker served none")
    assert.equal(40, count[h.lpid] + count[h.workers[1]])
    -- the parent goes without a chance to do anything: the workers follow
    os.execute("kill -KILL " .. h.lpid)
    assert.is_true(waitgone({ h.lpid, table.unpack(h.workers) }, 5), "a worker outlived its parent")
  end)

  it("http_server: 3 processes serve files over keep-alive connections; workers leave on SIGTERM", function()
    if not PROC then pending(NOPROC) return end
    local later = cleanups()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    later(function() os.execute("rm -rf " .. q(dir)) end)
    X.writefile(dir .. "/a.txt", "hello workers\n")
    local h = start("http_server.lua", { dir }, 3)
    later(function() stop(h) end)
    assert.equal(2, #h.workers)
    local conns = {}
    later(function() for _, c in ipairs(conns) do c:close() end end)
    for i = 1, 60 do
      local c = connect(h.port)
      conns[i] = c
      assert(c:sendall("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"))
      local buf = ""
      while not buf:find("hello workers\n", 1, true) do
        local d = assert(c:recv(4096))
        assert.not_equal("", d)
        buf = buf .. d
      end
      assert.matches("^HTTP/1%.1 200 OK\r\n", buf)
    end
    local count = spread(h, conns)
    local used = 0
    for _, pid in ipairs({ h.lpid, table.unpack(h.workers) }) do
      if count[pid] then used = used + 1 end
    end
    assert.is_true(used >= 2, "only one process served")   -- 3 is near certain; 2 proves the spread
    h.kill("TERM")
    assert.is_true(waitgone({ h.lpid, table.unpack(h.workers) }, 5), "a worker outlived its parent")
  end)

  it("http_server: a dead worker is reaped, reported and replaced; HTTP_SERVER_MAX_RESTARTS stops a crash loop",
    function()
    local later = cleanups()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    local errf = os.tmpname()
    later(function() os.execute("rm -rf " .. q(dir)); os.remove(errf) end)
    X.writefile(dir .. "/a.txt", "hello workers\n")
    local h = start("http_server.lua", { dir }, 2, { env = "HTTP_SERVER_MAX_RESTARTS=2", stderr = errf })
    later(function() stop(h) end)
    assert.equal(1, #h.workers)
    -- polls f (bounded) until it returns something
    local function waitfor(f, seconds, what)
      local t0 = S.monotime()
      repeat
        local v = f()
        if v then return v end
        os.execute("sleep 0.05")
      until S.monotime() - t0 > seconds
      error("timed out waiting for " .. what .. "; the server's stderr:\n" .. X.readfile(errf), 2)
    end
    local function stderrline(n)           -- the n-th line the parent wrote to stderr
      return waitfor(function()
        local i = 0
        for l in X.readfile(errf):gmatch("[^\n]*\n") do
          i = i + 1
          if i == n then return l end
        end
      end, 10, "stderr line " .. n)
    end
    local function listening()
      local want, count = (":%04X"):format(h.port), 0
      for line in io.lines("/proc/net/tcp") do
        local loc, state = line:match("^%s*%d+: %x+(:%x+) %x+:%x+ (%x+)")
        if loc == want and state == "0A" then count = count + 1 end
      end
      return count
    end
    -- the one worker of the parent, once it differs from old and listens
    local function newworker(old)
      return waitfor(function()
        local kids = children(h.lpid)
        if #kids == 1 and kids[1] ~= old and listening() == 2 then return kids[1] end
      end, 10, "a new worker")
    end
    local function get(c)
      assert(c:sendall("GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"))
      local buf = ""
      while not buf:find("hello workers\n", 1, true) do
        local d = assert(c:recv(4096))
        assert.not_equal("", d)
        buf = buf .. d
      end
      assert.matches("^HTTP/1%.1 200 OK\r\n", buf)
    end
    local conns = {}
    later(function() for _, c in ipairs(conns) do c:close() end end)
    -- connections until one lands on pid (bounded), each answered
    local function servedby(pid)
      for _ = 1, 200 do
        local c = connect(h.port)
        conns[#conns + 1] = c
        get(c)
        local count = spread({ lpid = h.lpid, port = h.port, workers = { pid } }, { c })
        if count[pid] then return true end
      end
      return false
    end

    local first = h.workers[1]
    assert.is_true(servedby(first))
    os.execute("kill -KILL " .. first)
    assert.equal("http_server: worker 2 killed by signal 9; starting another\n", stderrline(1))
    -- reaped: no zombie left behind
    waitfor(function() return not io.open("/proc/" .. first .. "/stat") end, 5, "the dead worker to be reaped")
    local second = newworker(first)
    assert.is_true(servedby(second), "the new worker served no request")
    -- a crash loop: the third death within the minute waits for the cap
    os.execute("kill -KILL " .. second)
    assert.equal("http_server: worker 2 killed by signal 9; starting another\n", stderrline(2))
    local third = newworker(second)
    os.execute("kill -KILL " .. third)
    assert.matches("^http_server: worker 2 killed by signal 9; 2 restarts in the last minute, the next in %d+ s\n$",
      stderrline(3))
    waitfor(function() return not io.open("/proc/" .. third .. "/stat") end, 5, "the dead worker to be reaped")
    for _ = 1, 10 do                      -- no new worker for a while, and the parent serves
      assert.same({}, children(h.lpid))
      local c = connect(h.port)
      conns[#conns + 1] = c
      get(c)
      os.execute("sleep 0.1")
    end
    assert.equal(3, select(2, X.readfile(errf):gsub("\n", "")))
  end)

  it("refuses a bad worker count", function()
    local r = X.run(X.example("echo_server_loop", { "127.0.0.1", "0", "--workers", "0" }))
    assert.equal(2, r.code)
    assert.matches("%-%-workers needs a positive integer", r.err)
    r = X.run(X.example("http_server", { "127.0.0.1", "0", ".", "--workers", "x" }))
    assert.equal(2, r.code)
  end)
end)
