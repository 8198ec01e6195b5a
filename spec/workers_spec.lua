-- luacheck: std +busted
-- --workers N of examples/echo_server_loop.lua and examples/http_server.lua:
-- connections are spread over the worker processes (which process holds
-- each accepted socket is read from /proc), and every worker exits with the
-- parent, even one killed with SIGKILL.
local S = require "bsdsocket"
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
local function start(script, args, n)
  local words = {}
  for i, a in ipairs(args) do words[i] = q(a) end
  -- HTTP_SERVER_IDLE: http_server keeps the idle connections open until the
  -- spec has looked at them (its 30 s default ran out on a loaded machine)
  local cmd = ("echo $$; exec env LUA_PATH='lua/?.lua;;' LUA_CPATH=%s HTTP_SERVER_IDLE=300"
    .. " timeout 60 lua5.4 examples/%s"
    .. " 127.0.0.1 0 %s --workers %d 2>&1"):format(q(BUILD .. "/?.so;;"), script, table.concat(words, " "), n)
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

describe("--workers", function()
  it("echo_server_loop: 40 connections land on both of 2 processes; workers die with a KILLed parent", function()
    local h = start("echo_server_loop.lua", {}, 2)
    finally(function() h.kill("KILL"); h.pipe:close() end)
    assert.equal(1, #h.workers)
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:close() end end)
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
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. q(dir)))
    finally(function() os.execute("rm -rf " .. q(dir)) end)
    X.writefile(dir .. "/a.txt", "hello workers\n")
    local h = start("http_server.lua", { dir }, 3)
    finally(function() h.kill("KILL"); h.pipe:close() end)
    assert.equal(2, #h.workers)
    local conns = {}
    finally(function() for _, c in ipairs(conns) do c:close() end end)
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

  it("refuses a bad worker count", function()
    local r = X.run(X.example("echo_server_loop", { "127.0.0.1", "0", "--workers", "0" }))
    assert.equal(2, r.code)
    assert.matches("%-%-workers needs a positive integer", r.err)
    r = X.run(X.example("http_server", { "127.0.0.1", "0", ".", "--workers", "x" }))
    assert.equal(2, r.code)
  end)
end)
