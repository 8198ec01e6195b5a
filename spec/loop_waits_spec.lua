-- luacheck: std +busted
-- bsdsocket.loop in its corners: waits on readiness that is already there,
-- errors the loop meets on a task's behalf, sockets closed under a waiting
-- task, loop.cancel and loop.join. Every loop.run is bounded in time.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local net = require "helpers.net"

describe("bsdsocket.loop waits", function()
  local errors
  before_each(function()
    errors = {}
    loop.onerror = function(err, task) errors[#errors + 1] = { err = tostring(err), task = task } end
  end)
  after_each(function()
    loop.onerror = nil
    assert.equal(0, loop.count())
  end)

  describe("loop.wait", function()
    it("answers true at once, again and again, while the socket stays readable", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      d:send("x")
      local got = {}
      loop.spawn(function()
        for i = 1, 3 do
          local t0 = S.monotime()
          got[i] = { loop.wait(c, "r", 1), S.monotime() - t0 }
        end
      end)
      assert.is_true(loop.run(5))
      for i = 1, 3 do
        assert.is_true(got[i][1])
        assert.is_true(got[i][2] < 0.5, "wait " .. i .. " took " .. got[i][2] .. " s")
      end
      assert.equal("x", c:recv(1))  -- nothing was consumed
    end)

    it("answers true for an idle writable socket, with and without a timeout", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local got = {}
      loop.spawn(function()
        got[1] = loop.wait(c, "w", 1)
        got[2] = loop.wait(c, "w")
        got[3] = loop.wait(c, "w")
      end)
      assert.is_true(loop.run(5))
      assert.same({ true, true, true }, got)
    end)

    it("waits for data that comes later, and times out when none does", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local got = {}
      loop.spawn(function()
        got.first = loop.wait(c, "r", 0.1)
        got.second = loop.wait(c, "r", 5)
      end)
      loop.spawn(function()
        loop.sleep(0.3)
        d:send("late")
      end)
      assert.is_true(loop.run(5))
      assert.is_false(got.first)
      assert.is_true(got.second)
    end)

    it("outside tasks waits with poll(2): true when ready, false after the timeout", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      assert.is_true(loop.wait(c, "w", 1))
      local dt, r = net.timed(loop.wait, c, "r", 0.1)
      assert.is_false(r)
      assert.is_true(dt >= 0.09)
      d:send("x")
      assert.is_true(loop.wait(c, "r", 1))
    end)
  end)

  describe("errors of the loop's machinery", function()
    it("loop.wait on a closed socket fails that task only; the loop and the other tasks go on", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      c:close()
      local ticks = 0
      local bad = loop.spawn(function() loop.wait(c, "r", 1) end)
      loop.spawn(function()
        for _ = 1, 3 do
          loop.sleep(0.02)
          ticks = ticks + 1
        end
      end)
      assert.is_true(loop.run(5))
      assert.equal(3, ticks)
      assert.equal(1, #errors)
      assert.equal(bad, errors[1].task)
      assert.matches("attempt to use a closed socket", errors[1].err)
    end)

    it("loop.wait on an object that is not pollable fails that task only", function()
      local ok
      loop.spawn(function() loop.wait({}, "r", 1) end)
      loop.spawn(function() loop.sleep(0.02) ok = true end)
      assert.is_true(loop.run(5))
      assert.is_true(ok)
      assert.equal(1, #errors)
    end)
  end)

  describe("closing a socket another task waits on", function()
    it("wakes a recv with nil, msg, EBADF, with and without a timeout", function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      c:settimeout(5)
      local got = {}
      loop.spawn(function() got.recv = table.pack(a:recv(10)) end)
      loop.spawn(function() got.timed = table.pack(c:recv(10)) end)
      loop.spawn(function()
        loop.sleep(0.05)
        a:close()
        c:close()
      end)
      local dt, done = net.timed(loop.run, 5)
      assert.is_true(done)
      assert.is_true(dt < 2, "took " .. dt .. " s")
      assert.same({ n = 3, nil, "recv: socket closed while waiting", "EBADF" }, got.recv)
      assert.same({ n = 3, nil, "recv: socket closed while waiting", "EBADF" }, got.timed)
      assert.equal(0, #errors)
    end)

    it("wakes every task waiting on it, readers, writers and loop.wait alike", function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      a:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
      local got = {}
      loop.spawn(function() local code = select(3, a:recv(10)) got[#got + 1] = code end)
      loop.spawn(function() local code = select(3, a:recvall(10)) got[#got + 1] = code end)
      loop.spawn(function() local code = select(3, a:sendall(("x"):rep(1 << 22))) got[#got + 1] = code end)
      loop.spawn(function() local code = select(3, loop.wait(a, "r")) got[#got + 1] = code end)
      loop.spawn(function()
        loop.sleep(0.05)
        a:close()
      end)
      assert.is_true(loop.run(5))
      assert.same({ "EBADF", "EBADF", "EBADF", "EBADF" }, got)
    end)

    it("wakes an accept on a listener closed by a <close> variable in another task", function()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local got
      loop.spawn(function() got = table.pack(srv:accept()) end)
      loop.spawn(function()
        local owned <close> = srv  -- luacheck: ignore 211
        loop.sleep(0.05)
      end)
      assert.is_true(loop.run(5))
      assert.equal("EBADF", got[3])
    end)
  end)

  describe("loop.cancel", function()
    it("ends the task's wait with nil, msg, ECANCELED; the task decides, its <close> variables close", function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      local got, closed = {}, false
      local t = loop.spawn(function()
        local guard <close> = setmetatable({}, { __close = function() closed = true end })
        local _ = guard
        got.recv = table.pack(a:recv(10))
        return "returned"
      end)
      loop.spawn(function()
        loop.sleep(0.05)
        got.cancel = loop.cancel(t, "shutting down")
      end)
      assert.is_true(loop.run(5))
      assert.same({ n = 3, nil, "recv: shutting down", "ECANCELED" }, got.recv)
      assert.is_true(got.cancel)
      assert.is_true(closed)
      assert.same({ true, "returned" }, { loop.join(t) })
    end)

    it("cancels sleep, loop.wait, join and a task that has not started", function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      local got = {}
      local sleeper = loop.spawn(function() got.sleep = table.pack(loop.sleep(10)) end)
      local waiter = loop.spawn(function() got.wait = table.pack(loop.wait(a, "r", 10)) end)
      local joiner = loop.spawn(function() got.join = table.pack(loop.join(sleeper, 10)) end)
      local never = loop.spawn(function() got.never = true end)
      assert.is_true(loop.cancel(never))
      loop.spawn(function()
        loop.sleep(0.05)
        loop.cancel(joiner)
        loop.cancel(waiter, "enough")
        loop.cancel(sleeper)
      end)
      local dt, done = net.timed(loop.run, 5)
      assert.is_true(done)
      assert.is_true(dt < 2)
      assert.same({ n = 3, nil, "sleep: cancelled", "ECANCELED" }, got.sleep)
      assert.same({ n = 3, nil, "wait: enough", "ECANCELED" }, got.wait)
      assert.same({ n = 3, nil, "join: cancelled", "ECANCELED" }, got.join)
      assert.is_nil(got.never)
      assert.same({ false, "cancelled" }, { loop.join(never) })
    end)

    it("is false for a finished task and raises for a non-task or a task cancelling itself", function()
      local t = loop.spawn(function() end)
      assert.is_true(loop.run(1))
      assert.is_false(loop.cancel(t))
      assert.has_error(function() loop.cancel("x") end)
      local err
      loop.spawn(function() err = select(2, pcall(loop.cancel, (coroutine.running()))) end)
      assert.is_true(loop.run(1))
      assert.matches("cannot cancel itself", err)
    end)
  end)

  describe("loop.join", function()
    it("in a task: waits for another task and returns true and its results", function()
      local got
      local worker = loop.spawn(function(x)
        loop.sleep(0.05)
        return x * 2, "two"
      end, 21)
      loop.spawn(function() got = table.pack(loop.join(worker, 5)) end)
      assert.is_true(loop.run(5))
      assert.same({ n = 3, true, 42, "two" }, got)
    end)

    it("gives false and the error of a task that failed, and times out", function()
      local got = {}
      local failing = loop.spawn(function()
        loop.sleep(0.02)
        error("broken", 0)
      end)
      local slow = loop.spawn(function() loop.sleep(0.5) end)
      loop.spawn(function()
        got.failed = table.pack(loop.join(failing, 5))
        got.slow = table.pack(loop.join(slow, 0.05))
        got.done = table.pack(loop.join(slow, 5))
      end)
      assert.is_true(loop.run(5))
      assert.same({ n = 2, false, "broken" }, got.failed)
      assert.same({ n = 3, nil, "join: timed out", "ETIMEDOUT" }, got.slow)
      assert.same({ n = 1, true }, got.done)
      assert.equal(1, #errors)
    end)

    it("outside tasks runs the loop until the task ends, or the timeout", function()
      local t = loop.spawn(function()
        loop.sleep(0.05)
        return "ok"
      end)
      local other = loop.spawn(function() loop.sleep(0.3) end)
      assert.same({ true, "ok" }, { loop.join(t, 5) })
      assert.equal(1, loop.count())
      assert.same({ nil, "join: timed out", "ETIMEDOUT" }, { loop.join(other, 0.01) })
      assert.same({ true }, { loop.join(other, 5) })
    end)
  end)
end)
