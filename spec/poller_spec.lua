-- luacheck: std +busted
-- luacheck: ignore 211/_c.
-- S.poller(): epoll on Linux, kqueue on macOS and the BSDs, poll(2) in a
-- build with BACKEND=poll (make test-poll runs the suite on it, make
-- test-kqueue on libkqueue). The last test builds the poll variant and runs
-- this file, loop_spec.lua and readiness_spec.lua on it.
local S = require "bsdsocket"
local net = require "helpers.net"

local BACKEND = S.poller():backend()
local EPOLL = BACKEND == "epoll"
local BUILD = os.getenv("BSDSOCKET_BUILD") or "build"

local function collect(p, timeout)
  local got, n = {}, 0
  for obj, ev in p:wait(timeout) do
    n = n + 1
    assert(n <= 100000, "runaway wait")
    got[#got + 1] = { obj, ev }
  end
  return got
end

local function shellquote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- runs a Lua chunk in a child process with the descriptor limit raised
local function child(code)
  local build = os.getenv("BSDSOCKET_BUILD") or "build"
  local cmd = ("ulimit -n 16384 2>/dev/null || ulimit -n 8192 2>/dev/null; "
    .. "LUA_PATH='lua/?.lua;;' LUA_CPATH=%s " .. net.luacmd(60) .. " -e %s 2>&1")
    :format(shellquote(build .. "/?.so;;"), shellquote(code))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok = p:close()
  return ok, out
end

-- a new socket with descriptor number fd (the lowest free number comes
-- first; the sockets it passes on the way go to held, to close at the end)
local function newsocketat(fd, held)
  for _ = 1, 100 do
    local s = assert(S.socket(S.AF_UNIX, S.SOCK_DGRAM))
    held[#held + 1] = s
    if s:fileno() >= fd then
      assert.equal(fd, s:fileno())
      return s
    end
  end
  error("no socket got descriptor " .. fd)
end

describe("S.poller", function()
  it("is a poller object with a backend, a descriptor and a text form", function()
    local p <close> = assert(S.poller())
    -- the backend the build asked for (make BACKEND=...), else the platform's
    local f = io.open(BUILD .. "/backend")
    local asked = f and f:read("l") or ""
    if f then f:close() end
    local uname = io.popen("uname -s"):read("l")
    local best = uname == "Linux" and "epoll"
      or (uname == "Darwin" or uname:match("BSD$")) and "kqueue" or "poll"
    assert.equal(asked ~= "" and asked or best, p:backend())
    if BACKEND ~= "poll" then
      assert.is_true(p:fileno() >= 0)
      assert.matches("^bsdsocket.poller " .. BACKEND .. " fd=%d+$", tostring(p))
    else
      assert.is_nil(p:fileno())
      assert.matches("^bsdsocket.poller poll 0 registered$", tostring(p))
    end
    assert.is_true(p:close())
    assert.is_true(p:close())
    assert.equal("bsdsocket.poller (closed)", tostring(p))
    assert.has_error(function() p:wait(0) end, "attempt to use a closed poller")
    assert.has_error(function() p:add(0, "r") end, "attempt to use a closed poller")
  end)

  it("exports the event bits as the C names", function()
    assert.equal(1, S.POLLIN)
    assert.equal(4, S.POLLOUT)
    assert.is_number(S.POLLHUP)
    assert.is_number(S.POLLERR)
    assert.is_number(S.EPOLLONESHOT)
    assert.equal(EPOLL, S.EPOLLET ~= nil)
  end)

  it("reports readability and hands back the registered object", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    assert.is_true(p:add(a, "r"))
    assert.same({}, collect(p, 0))
    assert(b:send("x"))
    local got = collect(p, 1)
    assert.equal(1, #got)
    assert.equal(a, got[1][1])
    assert.equal(S.POLLIN, got[1][2] & S.POLLIN)
    -- level-triggered: still readable until read
    assert.equal(1, #collect(p, 0))
    assert.equal("x", a:recv(10))
    assert.same({}, collect(p, 0))
  end)

  it("reports writability, and modify changes the events", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    assert(p:add(a, "w"))
    local got = collect(p, 0)
    assert.equal(1, #got)
    assert.equal(S.POLLOUT, got[1][2] & (S.POLLOUT | S.POLLIN))
    assert.is_true(p:modify(a, "r"))
    assert.same({}, collect(p, 0))
    assert(p:modify(a, S.POLLIN | S.POLLOUT))
    assert(b:send("y"))
    got = collect(p, 0)
    assert.equal(S.POLLIN | S.POLLOUT, got[1][2] & (S.POLLIN | S.POLLOUT))
  end)

  it("takes integer descriptors and hands back the integer", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    assert(p:add(a:fileno(), "r"))
    assert(b:send("z"))
    local got = collect(p, 1)
    assert.equal(a:fileno(), got[1][1])
  end)

  it("reports hang-up when the peer closes", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    assert(p:add(a, "r"))
    b:close()
    local got = collect(p, 1)
    assert.equal(1, #got)
    assert.equal(a, got[1][1])
    assert.is_true(got[1][2] & (S.POLLHUP | S.POLLIN) ~= 0)
    assert.equal("", a:recv(1))
  end)

  it("reports an error on a connection refused", function()
    local p <close> = S.poller()
    local l = S.socket(S.AF_INET, S.SOCK_STREAM)
    assert(l:bind("127.0.0.1", 0))
    local port = l:getsockname().port
    l:close()                                   -- nothing listens there now
    local c <close> = S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK)
    local ok, _, code = c:connect("127.0.0.1", port)
    assert(ok or code == "EINPROGRESS" or code == "ECONNREFUSED")
    assert(p:add(c, "w"))
    local got = collect(p, 2)
    assert.equal(1, #got)
    assert.is_true(got[1][2] & (S.POLLERR | S.POLLHUP) ~= 0)
  end)

  it("waits no longer than the timeout, and not shorter", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    assert(p:add(a, "r"))
    local t0 = S.monotime()
    assert.same({}, collect(p, 0.15))
    local dt = S.monotime() - t0
    assert.is_true(dt >= 0.15 and dt < 2, "waited " .. dt)
    assert.has_error(function() p:wait(0 / 0) end)
  end)

  it("remove stops the events, even while a wait's results are handed out", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    local c, d = S.socketpair()
    local _cc <close> = c
    local _cd <close> = d
    assert(p:add(a, "r"))
    assert(p:add(c, "r"))
    assert(b:send("1"))
    assert(d:send("2"))
    local seen, first, other = 0, nil, nil
    for obj in p:wait(1) do
      seen = seen + 1
      -- the first one handed out removes the other: it must not come next
      first, other = obj, obj == a and c or a
      assert.is_true(p:remove(other))
    end
    assert.equal(1, seen)
    local ok, msg, code = p:remove(other)
    assert.is_nil(ok)
    assert.matches("^poller remove fd %d+: ", msg)
    assert.equal("ENOENT", code)
    local got = collect(p, 0)                -- the first is still registered
    assert.equal(1, #got)
    assert.equal(first, got[1][1])
  end)

  it("modify of an unregistered descriptor is an ENOENT result", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    local ok, msg, code = p:modify(a, "r")
    assert.is_nil(ok)
    assert.matches("^poller modify fd %d+: ", msg)
    assert.equal("ENOENT", code)
    -- add twice replaces
    assert(p:add(a, "r"))
    assert(p:add(a, "w"))
    assert.equal(1, #collect(p, 0))
  end)

  it("one-shot registrations fire once until re-armed", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    assert(p:add(a, "ro"))
    assert(b:send("x"))
    assert.equal(1, #collect(p, 1))
    assert.same({}, collect(p, 0))          -- still readable, but disarmed
    assert(p:add(a, "ro"))
    assert.equal(1, #collect(p, 0))
  end)

  it("edge-triggered registrations fire per edge (epoll only)", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    if not EPOLL then
      assert.has_error(function() p:add(a, "re") end)
      return
    end
    assert(p:add(a, "re"))
    assert(b:send("x"))
    assert.equal(1, #collect(p, 1))
    assert.same({}, collect(p, 0))          -- no new edge
    assert(b:send("y"))
    assert.equal(1, #collect(p, 1))
    assert.equal(S.EPOLLET, S.EPOLLET & (S.POLLIN | S.EPOLLET))
  end)

  it("rejects bad events and closed sockets", function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _ca <close> = a
    local _cb <close> = b
    assert.has_error(function() p:add(a, "x") end)
    assert.has_error(function() p:add(a, 1 << 20) end)
    assert.has_error(function() p:add(a, {}) end)
    assert.has_error(function() p:add("nope", "r") end)
    b:close()
    assert.has_error(function() p:add(b, "r") end, "attempt to use a closed socket")
    assert.is_true(p:remove(b))             -- nothing left to remove
    assert.has_error(function() S.poller(42) end)
  end)

  it("deletes a registration before the socket's descriptor is closed",
  function()
    local p <close> = S.poller()
    local q <close> = S.poller({ weak = true })
    local held = {}
    finally(function() net.closeall(table.unpack(held)) end)
    local function socketat(fd) return newsocketat(fd, held) end
    local a, b = S.socketpair()
    held[1] = b
    assert(p:add(a, "r"))
    assert(q:add(a, "rw"))
    local fd = a:fileno()
    a:close()
    if BACKEND == "poll" then
      assert.equal("bsdsocket.poller poll 0 registered", tostring(p))
    end
    -- the number's next socket is registered in neither poller
    local c = socketat(fd)
    for _, poller in ipairs({ p, q }) do
      local ok, msg, code = poller:modify(c, "r")
      assert.is_nil(ok, "still registered")
      assert.matches("^poller modify fd %d+: ", msg)
      assert.equal("ENOENT", code)
    end
    -- also when the socket is collected (its __gc closes it)
    c:detach()
    local e = assert(S.fromfd(fd))
    assert(q:add(e, "r"))
    e = nil                                 -- luacheck: ignore 311
    collectgarbage()
    collectgarbage()
    local _, _, code = q:modify(socketat(fd), "r")
    assert.equal("ENOENT", code, "still registered")
  end)

  it("deletes the registration of a lookup's wake socket before it is closed",
  function()
    local p <close> = S.poller()
    local held = {}
    finally(function() net.closeall(table.unpack(held)) end)
    -- a task's lookup yields a pollable request; the loop registers it
    local co = coroutine.create(function()
      return S.getaddrinfo("localhost", 80)
    end)
    S._tasks[co] = true
    local ok, what, request = coroutine.resume(co)
    assert.is_true(ok, what)
    assert.equal("bsdsocket.wait", what)
    local fd = request:pollfd()
    assert(p:add(request, "r"))
    assert.is_true(S._ready(request, "r", 10), "no answer")
    ok = coroutine.resume(co, true)         -- takes the answer, closes fd
    assert.is_true(ok)
    assert.equal("dead", coroutine.status(co))
    request = nil                           -- luacheck: ignore 311
    collectgarbage()
    if BACKEND == "poll" then
      assert.equal("bsdsocket.poller poll 0 registered", tostring(p))
    end
    local _, _, code = p:modify(newsocketat(fd, held), "r")
    assert.equal("ENOENT", code, "still registered")
  end)

  it("refuses a descriptor that is not open (EBADF) and a file (EPERM)",
  function()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local fd = a:fileno()
    a:close()
    b:close()
    local ok, msg, code = p:add(fd, "r")
    assert.is_nil(ok)
    assert.matches("^poller add fd " .. fd .. ": ", msg)
    assert.equal("EBADF", code)
    if BACKEND == "poll" then
      assert.equal("bsdsocket.poller poll 0 registered", tostring(p))
    end
    -- a file is always ready, and kqueue never reports its end: epoll's
    -- EPERM on every backend
    local path = os.tmpname()
    local file = assert(io.open(path, "w"))
    finally(function() file:close() os.remove(path) end)
    local ffd
    for n, target in pairs(net.fds()) do
      if target == path then ffd = n end
    end
    assert.is_truthy(ffd)
    ok, msg, code = p:add(ffd, "r")
    assert.is_nil(ok, "a regular file was registered")
    assert.matches("^poller add fd %d+: ", msg)
    assert.equal("EPERM", code)
    assert.same({}, collect(p, 0))
  end)

  it("drops a socket closed while registered, also when its number is reused", function()
    -- sockets forgotten by earlier specs are closed now, not by a collection
    -- in the middle (which would free a lower number for c to get)
    collectgarbage()
    collectgarbage()
    local p <close> = S.poller()
    local a, b = S.socketpair()
    local _cb <close> = b
    assert(p:add(a, "r"))
    assert(b:send("x"))
    local fd = a:fileno()
    a:close()
    assert.same({}, collect(p, 0.05))
    -- a new socket gets the same number; it is not registered. (The lowest
    -- free number may be another one: libkqueue closes a closed kqueue's
    -- own descriptors later, from its own thread; so make sockets until
    -- one has it.)
    local extra = {}
    finally(function() net.closeall(table.unpack(extra)) end)
    local c, d = net.pair_with_fd(fd, extra)
    assert(c, "no new socket got descriptor " .. fd)
    local _cc <close> = c
    local _cd <close> = d
    assert(d:send("y"))
    assert.same({}, collect(p, 0.05))
    assert(p:add(c, "r"))
    local got = collect(p, 1)
    assert.equal(c, got[1][1])
  end)

  it("a weak poller does not keep sockets alive", function()
    local p <close> = S.poller({ weak = true })
    local b <close> = (function()
      local a, b = S.socketpair()
      assert(p:add(a, "r"))
      return b
    end)()
    collectgarbage()
    collectgarbage()
    b:send("x")   -- the peer is gone (collected and closed): EPIPE or not
    assert.same({}, collect(p, 0.05))
    -- a strong poller keeps them
    local q <close> = S.poller()
    local keep = setmetatable({}, { __mode = "v" })
    do
      local a2, b2 = S.socketpair()
      keep[1] = a2
      assert(q:add(a2, "r"))
      b2:close()
    end
    collectgarbage()
    collectgarbage()
    assert.is_not_nil(keep[1])
    local got = collect(q, 1)
    assert.equal(keep[1], got[1][1])
  end)

  it("handles thousands of registered sockets, descriptors past 1024, cost by ready ones", function()
    local ok, out = child([==[
      local S = require "bsdsocket"
      local p = S.poller()
      local a, b = {}, {}
      for i = 1, 2500 do
        a[i], b[i] = assert(S.socketpair())
        assert(p:add(a[i], "r"))
      end
      assert(a[2500]:fileno() > 1024, "descriptors past 1024")
      local t0 = S.monotime()
      for _ = 1, 2000 do for _ in p:wait(0) do error("nothing is ready") end end
      local idle = S.monotime() - t0
      for i = 7, 2500, 10 do assert(b[i]:send("x")) end
      -- a wait hands out at most as many as its buffer holds (it grows
      -- when a wait fills it); the rest come with the next waits
      local seen, count = {}, 0
      for _ = 1, 20 do
        for obj, ev in p:wait(count == 0 and 1 or 0) do
          assert(ev & S.POLLIN ~= 0)
          assert(not seen[obj], "reported twice")
          seen[obj] = true
          count = count + 1
          assert(obj:recv(1) == "x")
        end
      end
      assert(count == 250, "ready: " .. count)
      for i = 7, 2500, 10 do assert(seen[a[i]]) end
      print(("ok %.4f"):format(idle))
    ]==])
    assert(ok, out)
    local idle = tonumber(out:match("^ok ([%d.]+)"))
    assert(idle, out)
    if EPOLL then   -- 2000 waits over 2,500 idle sockets: no scan of them
      assert.is_true(idle < 0.5, "2000 idle waits took " .. idle .. " s")
    end
  end)

  if not os.getenv("BSDSOCKET_POLL_NESTED") then
    it("the poll(2) backend (BACKEND=poll) builds and passes the poller,"
      .. " loop and readiness specs", function()
      local dir = os.tmpname()
      os.remove(dir)
      local build = ("make -s BUILD=%s BACKEND=poll %s/bsdsocket/core.so 2>&1")
        :format(shellquote(dir), shellquote(dir))
      local mk = assert(io.popen(build, "r"))
      local mkout = mk:read("a")
      assert(mk:close(), mkout)
      local cmd = ("BSDSOCKET_POLL_NESTED=1 BSDSOCKET_BUILD=%s " .. net.luacmd(300) .. " " .. net.busted .. " "
        .. "-o TAP spec/poller_spec.lua spec/loop_spec.lua spec/readiness_spec.lua 2>&1"):format(shellquote(dir))
      local p = assert(io.popen(cmd, "r"))
      local out = p:read("a")
      local ok = p:close()
      os.execute("rm -rf " .. shellquote(dir))
      assert(ok, out)
      assert.matches("\nok %d+", out)
      assert.not_matches("not ok", out)
    end)
  end
end)
