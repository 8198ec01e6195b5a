-- luacheck: std +busted
-- bsdsocket.loop on real loopback sockets. Every loop.run is bounded in time.
local S = require "bsdsocket"
local net = require "helpers.net"
local loop = require "bsdsocket.loop"
local backend = require "helpers.backend"

local function listener()
  local srv = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(srv:bind("127.0.0.1", 0))
  assert(srv:listen())
  return srv, srv:getsockname().port
end

describe("bsdsocket.loop", function()
  local errors = require("helpers.loop_errors").collect(before_each, after_each)

  it("runs tasks with their arguments and returns true when all are done", function()
    local got = {}
    local co = loop.spawn(function(a, b, ...)
      got[#got + 1] = { a, b, select("#", ...) }
    end, 1, nil, nil)
    assert.equal("thread", type(co))
    loop.spawn(function() got[#got + 1] = "no args" end)
    assert.equal(2, loop.count())
    assert.is_true(loop.run(5))
    assert.same({ { 1, nil, 1 }, "no args" }, got)
    assert.is_true(loop.run(5))          -- nothing to do: returns at once
    assert.has_error(function() loop.spawn(42) end)
  end)

  it("serves many clients concurrently with sequential code", function()
    local srv <close> = listener()
    local port = srv:getsockname().port
    local N, served, checked = 300, 0, 0
    loop.spawn(function()
      for _ = 1, N do
        local c = assert(srv:accept())
        loop.spawn(function()
          while true do
            local data = assert(c:recv(100))
            if data == "" then break end
            assert(c:sendall(data:upper()))
          end
          c:close()
          served = served + 1
        end)
      end
    end)
    for i = 1, N do
      loop.spawn(function()
        local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        assert(c:connect("127.0.0.1", port))
        for k = 1, 3 do
          local msg = ("client %d line %d\n"):format(i, k)
          assert(c:sendall(msg))
          assert.equal(msg:upper(), c:recvall(#msg))
        end
        c:shutdown("w")
        assert.equal("", c:recv(1))
        checked = checked + 1
      end)
    end
    assert.is_true(loop.run(20))
    assert.same({}, errors)
    assert.equal(N, served)
    assert.equal(N, checked)
  end)

  it("sleeps: tasks wake in deadline order, without blocking the others", function()
    local order = {}
    local t0 = S.monotime()
    for _, d in ipairs({ 0.12, 0.03, 0.08, 0 }) do
      loop.spawn(function()
        loop.sleep(d)
        order[#order + 1] = d
      end)
    end
    assert.is_true(loop.run(5))
    local dt = S.monotime() - t0
    assert.same({ 0, 0.03, 0.08, 0.12 }, order)
    assert.is_true(dt >= 0.12 and dt < 2, "took " .. dt)
  end)

  it("sleep outside a task blocks the caller", function()
    local t0 = S.monotime()
    loop.sleep(0.05)
    assert.is_true(S.monotime() - t0 >= 0.05)
  end)

  it("times out a socket call in a task (ETIMEDOUT) while others go on", function()
    local a, b = S.socketpair()
    local result, ticks = nil, 0
    loop.spawn(function()
      a:settimeout(0.1)
      local t0 = S.monotime()
      local data, msg, code = a:recv(10)
      result = { data, code, S.monotime() - t0, msg }
    end)
    loop.spawn(function()
      for _ = 1, 5 do
        loop.sleep(0.01)
        ticks = ticks + 1
      end
    end)
    assert.is_true(loop.run(5))
    assert.is_nil(result[1])
    assert.equal("ETIMEDOUT", result[2])
    assert.is_true(result[3] >= 0.1 and result[3] < 2, "waited " .. result[3])
    assert.matches("timed out", result[4])
    assert.equal(5, ticks)
    -- the timed-out socket still works in a later task
    loop.spawn(function()
      b:send("late")
      assert.equal("late", a:recv(10))
    end)
    assert.is_true(loop.run(5))
    assert.same({}, errors)
    a:close()
    b:close()
  end)

  it("loop.wait waits for a socket or a descriptor, with a timeout", function()
    local a, b = S.socketpair()
    local c, d = S.socketpair()
    local fd = c:detach()                    -- a bare descriptor
    local r = {}
    loop.spawn(function()
      r[1] = loop.wait(a, "r", 0.05)         -- nothing comes: false
      r[2] = loop.wait(a, "r", 5)            -- b sends below: true
      r[3] = loop.wait(a, "w")               -- writable at once
      r[4] = loop.wait(fd, "r", 5)           -- d sends below: true
    end)
    loop.spawn(function()
      loop.sleep(0.1)
      b:send("x")
      loop.sleep(0.05)
      d:send("y")
    end)
    assert.is_true(loop.run(5))
    assert.same({ false, true, true, true }, r)
    assert.is_true(loop.wait(a, "r", 0))     -- outside a task: polls once
    assert.is_false(loop.wait(b, "r", 0.01))
    assert.has_error(function() loop.wait(a, "x") end)
    a:close()
    b:close()
    S.fromfd(fd):close()
    d:close()
  end)

  it("reports an error in a task and runs the others", function()
    local done = false
    local bad = loop.spawn(function()
      loop.sleep(0.01)
      error("boom")
    end)
    loop.spawn(function()
      loop.sleep(0.03)
      done = true
    end)
    assert.is_true(loop.run(5))
    assert.is_true(done)
    assert.equal(1, #errors)
    assert.matches("boom", errors[1].err)
    assert.equal(bad, errors[1].task)
  end)

  it("reports to stderr by default", function()
    local cmd = "LUA_PATH='lua/?.lua;;' LUA_CPATH='" .. (os.getenv("BSDSOCKET_BUILD") or "build")
      .. "/?.so;;' " .. net.luacmd(20) .. " -e 'local loop = require \"bsdsocket.loop\"; "
      .. "loop.spawn(function() error(\"kaput\") end); loop.spawn(function() print(\"other ran\") end); "
      .. "print(loop.run(5))' 2>&1"
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    assert.is_true(p:close())
    assert.matches("bsdsocket.loop: task failed: .*kaput", out)
    assert.matches("stack traceback", out)
    assert.matches("other ran\ntrue", out)
  end)

  it("stop() ends run(); run() again carries on", function()
    local steps = 0
    loop.spawn(function()
      for _ = 1, 3 do
        steps = steps + 1
        if steps == 1 then loop.stop() end
        loop.sleep(0)
      end
    end)
    assert.is_false(loop.run(5))
    assert.equal(1, steps)
    assert.equal(1, loop.count())
    assert.is_true(loop.run(5))
    assert.equal(3, steps)
  end)

  it("run(seconds) returns false when time is up", function()
    local a, b = S.socketpair()
    local got
    loop.spawn(function() got = a:recv(10) end)
    local t0 = S.monotime()
    assert.is_false(loop.run(0.1))
    assert.is_true(S.monotime() - t0 < 2)
    b:send("ok")
    assert.is_true(loop.run(5))
    assert.equal("ok", got)
    a:close()
    b:close()
    loop.spawn(function() loop.run(1) end)   -- run inside run: an error in that task
    assert.is_true(loop.run(1))
    assert.matches("already running", errors[1].err)
  end)

  it("a bare coroutine.yield() in a task just lets the others run", function()
    local trace = {}
    loop.spawn(function()
      trace[#trace + 1] = "a1"
      coroutine.yield()
      trace[#trace + 1] = "a2"
    end)
    loop.spawn(function() trace[#trace + 1] = "b" end)
    assert.is_true(loop.run(5))
    assert.same({ "a1", "b", "a2" }, trace)
  end)

  it("several tasks may wait on one socket: accept workers", function()
    local srv <close> = listener()
    local port = srv:getsockname().port
    local byworker, total = {}, 0
    for w = 1, 4 do
      loop.spawn(function()
        while total < 40 do
          srv:settimeout(0.5)
          local c = srv:accept()
          if not c then break end
          total = total + 1
          byworker[w] = (byworker[w] or 0) + 1
          c:sendall("hi\n")
          c:close()
          loop.sleep(0)
        end
      end)
    end
    for _ = 1, 40 do
      loop.spawn(function()
        local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        assert(c:connect("127.0.0.1", port))
        assert.equal("hi\n", c:recvall(3))
      end)
    end
    assert.is_true(loop.run(10))
    assert.same({}, errors)
    assert.equal(40, total)
    local workers = 0
    for _ in pairs(byworker) do workers = workers + 1 end
    assert.is_true(workers >= 2, "one worker took every connection")
  end)

  it("one task reads while another writes on the same socket", function()
    local a, b = S.socketpair()
    local big = string.rep("0123456789abcdef", 1 << 16)   -- 1 MiB, beyond the buffers
    local echoed
    loop.spawn(function()  -- the peer echoes in chunks
      while true do
        local d = b:recv(65536)
        if d == "" then break end
        assert(b:sendall(d))
      end
      b:close()
    end)
    loop.spawn(function() assert(a:sendall(big)); a:shutdown("w") end)
    loop.spawn(function() echoed = assert(a:recvall(#big)) end)
    assert.is_true(loop.run(20))
    assert.same({}, errors)
    assert.equal(#big, #echoed)
    assert.is_true(echoed == big)
    a:close()
  end)

  it("connect in a task waits for the handshake; refusal is a result", function()
    if backend.libkqueue then
      pending("libkqueue: it reads SO_ERROR to fill fflags, which clears a"
        .. " refused connect's error")
      return
    end
    local srv <close> = listener()
    local port = srv:getsockname().port
    local closed = S.socket(S.AF_INET, S.SOCK_STREAM)
    assert(closed:bind("127.0.0.1", 0))
    local deadport = closed:getsockname().port
    closed:close()
    local r = {}
    loop.spawn(function()
      local c <close> = S.socket(S.AF_INET, S.SOCK_STREAM)
      r.ok = c:connect("127.0.0.1", port)
      local d <close> = S.socket(S.AF_INET, S.SOCK_STREAM)
      r.refused = select(3, d:connect("127.0.0.1", deadport))
    end)
    assert.is_true(loop.run(5))
    assert.is_true(r.ok)
    assert.equal("ECONNREFUSED", r.refused)
  end)

  it("a dropped socket is collected (the loop holds no socket)", function()
    local weak = setmetatable({}, { __mode = "v" })
    local srv <close> = listener()
    local port = srv:getsockname().port
    loop.spawn(function()
      local c = srv:accept()
      weak[1] = c
      c:recv(10)                  -- waits once, so the loop registers it
    end)
    loop.spawn(function()
      local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(c:connect("127.0.0.1", port))
      loop.sleep(0.02)
      c:send("x")
    end)
    assert.is_true(loop.run(5))
    collectgarbage()
    collectgarbage()
    assert.is_nil(weak[1])
  end)

  it("thousands of idle tasks cost nothing to the busy ones", function()
    local pairs_, idle = {}, 1000
    for i = 1, idle do
      local a, b = S.socketpair()
      pairs_[i] = { a, b }
      loop.spawn(function() a:recv(1) end)   -- waits until the end
    end
    local a, b = S.socketpair()
    local rounds = 0
    loop.spawn(function()
      for _ = 1, 2000 do
        assert(a:send("p"))
        assert.equal("p", b:recv(1))
        rounds = rounds + 1
      end
      for i = 1, idle do pairs_[i][2]:send("x") end   -- release the idle ones
    end)
    local t0 = S.monotime()
    assert.is_true(loop.run(30))
    assert.equal(2000, rounds)
    assert.is_true(S.monotime() - t0 < 10)
    for i = 1, idle do pairs_[i][1]:close(); pairs_[i][2]:close() end
    a:close()
    b:close()
  end)
end)
