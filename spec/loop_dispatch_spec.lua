-- luacheck: std +busted
-- The loop's dispatch (csrc/loop.c) where a scheduler goes wrong: what one
-- task does to the others of the same wake-up batch (several descriptors
-- ready in one poller wait, several tasks woken on one descriptor), timers
-- with equal deadlines, errors, stop, cancel and join inside a batch,
-- sockets collected or detached while the loop knows their descriptor,
-- pollable objects. Real sockets throughout; every loop.run is bounded.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local net = require "helpers.net"

-- n connected socket pairs: the tasks' ends, the peers' ends
local function pairs_of(n)
  local mine, peers = {}, {}
  for i = 1, n do
    mine[i], peers[i] = assert(S.socketpair())
  end
  return mine, peers
end

local function closeall(list)
  for _, s in ipairs(list) do s:close() end
end

-- A task that writes to every peer in one resume, once the readers wait:
-- the next poller wait reports them all in one batch.
local function sendall_later(peers, what)
  loop.spawn(function()
    loop.sleep(0.02)
    for i, p in ipairs(peers) do assert(p:send(what or ("m" .. i))) end
  end)
end

describe("bsdsocket.loop dispatch", function()
  local errors = require("helpers.loop_errors").collect(before_each, after_each)

  describe("a pollable object", function()
    it("a pollfd() that spawns tasks: the waiting task is still cancellable and wakes", function()
      -- pollfd runs while the scheduler links the task: the tasks it spawns
      -- move the scheduler's task records. In a child, with a fresh
      -- scheduler (small task array), and so that a task left in a broken
      -- state does not stay in this file's loop.
      local out, ok = net.run_lua([[
        local S = require "bsdsocket"
        local loop = require "bsdsocket.loop"
        local c, d = S.socketpair()
        local spawned = 0
        local obj = { pollfd = function()
          for _ = 1, 200 do
            loop.spawn(function() spawned = spawned + 1 end)
          end
          return c:fileno()
        end }
        local first, second, t
        t = loop.spawn(function()
          first = { loop.wait(obj, "r", 2) }
          second = { loop.wait(obj, "r", 2) }
        end)
        loop.spawn(function()
          loop.sleep(0.02)
          print("cancel", pcall(loop.cancel, t, "stop waiting"))
          loop.sleep(0.02)
          d:send("x")
        end)
        print("run", loop.run(5), loop.count(), spawned % 200)
        print("first", table.unpack(first or {}, 1, 3))
        print("second", second and second[1])
      ]], 20)
      assert.is_true(ok, out)
      assert.matches("cancel\ttrue\ttrue\n", out)
      assert.matches("run\ttrue\t0\t0\n", out)
      assert.matches("first\tnil\twait: stop waiting\tECANCELED\n", out)
      assert.matches("second\ttrue\n", out)
    end)
  end)

  describe("a task closing sockets of a later task in the same batch", function()
    it("makes the later tasks' recv return nil, msg, EBADF", function()
      local mine, peers = pairs_of(4)
      finally(function() closeall(mine); closeall(peers) end)
      local got, first = {}, nil
      for i = 1, 4 do
        loop.spawn(function()
          local r = { mine[i]:recv(10) }
          got[i] = r
          if not first then     -- the first one woken closes the others
            first = i
            for j = 1, 4 do if j ~= i then mine[j]:close() end end
          end
        end)
      end
      sendall_later(peers)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ "m" .. first }, got[first])
      for i = 1, 4 do
        if i ~= first then
          assert.is_nil(got[i][1], "task " .. i .. " read " .. tostring(got[i][1]))
          assert.equal("recv: socket closed while waiting", got[i][2])
          assert.equal("EBADF", got[i][3])
        end
      end
    end)

    it("when the closed descriptor number is reused at once by a new socket", function()
      local mine, peers = pairs_of(3)
      local extra = {}
      finally(function() closeall(mine); closeall(peers); closeall(extra) end)
      local got, first, reused, fresh = {}, nil, nil, nil
      for i = 1, 3 do
        loop.spawn(function()
          local r = { mine[i]:recv(10) }
          got[i] = r
          if first then return end
          first = i
          local victim = mine[i % 3 + 1]
          local fd = victim:fileno()
          victim:close()
          -- the lowest free descriptor: the one just closed
          local a, b = assert(S.socketpair())
          extra[1], extra[2] = a, b
          reused = a:fileno() == fd or b:fileno() == fd
          local newone = a:fileno() == fd and a or b
          local other = newone == a and b or a
          assert(other:send("NEW"))
          -- waits on the reused number while its old event is in this batch
          fresh = { newone:recv(10) }
        end)
      end
      sendall_later(peers)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.is_true(reused, "the new socket did not reuse the number")
      assert.same({ "NEW" }, fresh)
      local victim = first % 3 + 1
      assert.is_nil(got[victim][1], "the closed socket's task read " .. tostring(got[victim][1]))
      assert.equal("EBADF", got[victim][3])
    end)

    it("makes every other task waiting on the same socket get EBADF (loop.wait)", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local got, n = {}, 0
      for i = 1, 3 do
        loop.spawn(function()
          local r = { loop.wait(c, "r") }
          n = n + 1
          got[i] = r
          if n == 1 then c:close() end
        end)
      end
      loop.spawn(function()
        loop.sleep(0.02)
        d:send("x")
      end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      local trues, closed = 0, 0
      for i = 1, 3 do
        if got[i][1] == true then trues = trues + 1
        elseif got[i][3] == "EBADF" then closed = closed + 1 end
      end
      assert.equal(1, trues, "only the task woken before the close sees it ready")
      assert.equal(2, closed)
    end)

    it("makes every other task reading the same socket get EBADF (recv)", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local got, n = {}, 0
      for i = 1, 3 do
        loop.spawn(function()
          local r = { c:recv(1) }
          n = n + 1
          got[i] = r
          if n == 1 then c:close() end
        end)
      end
      loop.spawn(function()
        loop.sleep(0.02)
        d:send("xyz")
      end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      local data, closed = 0, 0
      for i = 1, 3 do
        if got[i][1] then data = data + 1
        elseif got[i][3] == "EBADF" then closed = closed + 1 end
      end
      assert.equal(1, data)
      assert.equal(2, closed)
    end)
  end)

  describe("TLS streams (pollable userdata) in one batch", function()
    local ok_tls, tls = pcall(require, "bsdsocket.tls")
    local certs = require "helpers.certs"
    local c
    if not ok_tls then
      pending("bsdsocket.tls not built: " .. tostring(tls))
      return
    end
    setup(function() c = certs.make() end)
    teardown(function() if c then c:remove() end end)

    it("a task closing the TLS stream another task reads: the reader gets EBADF", function()
      local sctx = assert(tls.context({ mode = "server", certfile = c.server_cert, keyfile = c.server_key }))
      local cctx = assert(tls.context({ cafile = c.ca }))
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local streams, clients = {}, {}
      finally(function()
        srv:close()
        for _, t in pairs(streams) do t:close() end
        for _, t in pairs(clients) do t:close() end
      end)
      local N, got, first, ready = 3, {}, nil, 0
      for i = 1, N do
        loop.spawn(function()
          local t = tls.wrap(assert(srv:accept()), sctx)
          streams[i] = t
          assert(t:handshake())
          ready = ready + 1
          got[i] = { t:recv(100) }
          if first then return end
          first = i
          for j = 1, N do if streams[j] ~= t then streams[j]:close() end end
        end)
        loop.spawn(function()
          local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx, { servername = "localhost" })
          clients[i] = t
          assert(t:handshake())
        end)
      end
      loop.spawn(function()        -- every client writes in one resume
        while ready < N do loop.sleep(0.01) end
        loop.sleep(0.05)
        for i = 1, N do assert(clients[i]:send("m" .. i)) end
      end)
      assert.is_true(loop.run(10))
      assert.same({}, errors)
      assert.matches("^m%d$", got[first][1])  -- which client it was is not known
      for i = 1, N do
        if i ~= first then
          assert.is_nil(got[i][1], "stream " .. i .. " read " .. tostring(got[i][1]))
          assert.equal("EBADF", got[i][3], tostring(got[i][2]))
        end
      end
    end)
  end)

  describe("a task cancelling later tasks of the same batch", function()
    it("on other sockets: each cancelled task sees ECANCELED once", function()
      local mine, peers = pairs_of(3)
      finally(function() closeall(mine); closeall(peers) end)
      local tasks, got, first = {}, {}, nil
      for i = 1, 3 do
        tasks[i] = loop.spawn(function()
          got[i] = { loop.wait(mine[i], "r") }
          if first then return end
          first = i
          for j = 1, 3 do
            if j ~= i then assert.is_true(loop.cancel(tasks[j], "enough")) end
          end
        end)
      end
      sendall_later(peers)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      for i = 1, 3 do
        if i == first then assert.same({ true }, got[i])
        else assert.same({ nil, "wait: enough", "ECANCELED" }, got[i]) end
      end
    end)

    it("on the same socket: each cancelled task sees ECANCELED once, none is lost", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local tasks, got, resumed, first = {}, {}, {}, nil
      for i = 1, 4 do
        tasks[i] = loop.spawn(function()
          got[i] = { loop.wait(c, "r") }
          resumed[i] = (resumed[i] or 0) + 1
          if first then return end
          first = i
          for j = 1, 4 do
            if j ~= i then assert.is_true(loop.cancel(tasks[j], "enough")) end
          end
          -- the cancelled ones end; new tasks may take their records
          for _ = 1, 4 do loop.spawn(function() loop.sleep(0.05) end) end
        end)
      end
      loop.spawn(function()
        loop.sleep(0.02)
        d:send("x")
      end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      for i = 1, 4 do
        assert.equal(1, resumed[i], "task " .. i .. " resumed " .. tostring(resumed[i]) .. " times")
        if i == first then assert.same({ true }, got[i])
        else assert.same({ nil, "wait: enough", "ECANCELED" }, got[i]) end
      end
    end)
  end)

  describe("spawn, cancel and join inside one batch", function()
    it("a task that never started: join gives false and the message", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local ran, res = false, nil
      loop.spawn(function()
        assert(c:recv(1))
        local t = loop.spawn(function() ran = true end)
        assert.is_true(loop.cancel(t, "never mind"))
        res = { loop.join(t, 1) }
      end)
      sendall_later({ d })
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.is_false(ran)
      assert.same({ false, "never mind" }, res)
    end)

    it("a task that started and waits: join gives what it returned", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local res, inner
      loop.spawn(function()
        assert(c:recv(1))
        local t = loop.spawn(function()
          inner = { loop.sleep(10) }
          return "done", 42
        end)
        loop.sleep(0)             -- t starts and sleeps
        assert.is_true(loop.cancel(t))
        res = { loop.join(t, 1) }
        assert.is_false(loop.cancel(t))
      end)
      sendall_later({ d })
      local t0 = S.monotime()
      assert.is_true(loop.run(5))
      assert.is_true(S.monotime() - t0 < 5)
      assert.same({}, errors)
      assert.same({ nil, "sleep: cancelled", "ECANCELED" }, inner)
      assert.same({ true, "done", 42 }, res)
    end)

    it("cancelling the last queued task does not keep the run queue from yielding", function()
      -- The pass over the run queue ends at the task that was last when it
      -- began; if that task is cancelled before it starts, the pass must
      -- still end, or a task yielding in a loop starves timers and sockets.
      local flag, spins, ran, seen = false, 0, false, nil
      local t0 = S.monotime()
      local victim
      loop.spawn(function()
        assert.is_true(loop.cancel(victim))
        while not flag and S.monotime() - t0 < 2 do
          spins = spins + 1
          loop.sleep(0)
        end
        seen = flag
      end)
      loop.spawn(function()
        loop.sleep(0.05)
        flag = true
      end)
      victim = loop.spawn(function() ran = true end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.is_false(ran)
      assert.is_true(seen, "the timer did not fire while a task yielded (" .. spins .. " spins in 2 s)")
    end)
  end)

  describe("timers", function()
    it("10,000 equal deadlines fire in the order they were set", function()
      -- loop.sleep adds its own monotime to the deadline, so tasks yield
      -- what it yields with one deadline for all
      local SLEEP
      for i = 1, 50 do
        local name, v = debug.getupvalue(loop.sleep, i)
        if not name then break end
        if name == "SLEEP" then SLEEP = v end
      end
      assert.is_not_nil(SLEEP, "loop.sleep has no SLEEP upvalue")
      local N, order = 10000, {}
      local deadline = loop.now() + 0.3
      for i = 1, N do
        loop.spawn(function()
          coroutine.yield(SLEEP, deadline)
          order[#order + 1] = i
        end)
      end
      assert.is_true(loop.run(10))
      assert.equal(N, #order)
      for i = 1, N do
        if order[i] ~= i then
          assert.equal(i, order[i], "timer " .. i .. " fired as " .. order[i])
        end
      end
    end)

    it("10,000 loop.sleep of the same length fire in spawn order", function()
      local N, order = 10000, {}
      for i = 1, N do
        loop.spawn(function()
          loop.sleep(0.2)
          order[#order + 1] = i
        end)
      end
      assert.is_true(loop.run(10))
      assert.equal(N, #order)
      for i = 1, N do
        if order[i] ~= i then assert.equal(i, order[i]) end
      end
    end)

    it("a task cancelled while waiting with a deadline is not woken by it later", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local t, first, slept
      t = loop.spawn(function()
        first = { loop.wait(c, "r", 0.1) }
        local t0 = S.monotime()
        slept = { loop.sleep(0.4), S.monotime() - t0 }
      end)
      loop.spawn(function() loop.cancel(t) end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ nil, "wait: cancelled", "ECANCELED" }, first)
      assert.is_true(slept[1])
      assert.is_true(slept[2] >= 0.35, "the sleep ended after " .. slept[2] .. " s")
    end)

    it("join with a timeout: times out, and the end of the task does not wake the joiner later", function()
      local target = loop.spawn(function()
        loop.sleep(0.15)
        return "late"
      end)
      local first, slept, second
      loop.spawn(function()
        first = { loop.join(target, 0.03) }
        local t0 = S.monotime()
        slept = { loop.sleep(0.4), S.monotime() - t0 }
        second = { loop.join(target, 1) }
      end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ nil, "join: timed out", "ETIMEDOUT" }, first)
      assert.is_true(slept[1])
      assert.is_true(slept[2] >= 0.35, "the sleep ended after " .. slept[2] .. " s")
      assert.same({ true, "late" }, second)
    end)
  end)

  describe("errors and stop inside a batch", function()
    it("a task that errors: onerror gets it once, every other ready task runs", function()
      local mine, peers = pairs_of(5)
      finally(function() closeall(mine); closeall(peers) end)
      local got, n, bad = {}, 0, nil
      for i = 1, 5 do
        local t
        t = loop.spawn(function()
          got[i] = mine[i]:recv(10)
          n = n + 1
          if n == 2 then bad = t; error("boom " .. i) end
        end)
      end
      sendall_later(peers)
      assert.is_true(loop.run(5))
      assert.equal(1, #errors)
      assert.matches("boom %d", errors[1].err)
      assert.equal(bad, errors[1].task)
      for i = 1, 5 do assert.equal("m" .. i, got[i]) end
    end)

    it("a task that errors among tasks woken on the same socket", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local got, n = {}, 0
      for i = 1, 4 do
        loop.spawn(function()
          got[i] = loop.wait(c, "r")
          n = n + 1
          if n == 1 then error("first one fails") end
        end)
      end
      loop.spawn(function()
        loop.sleep(0.02)
        d:send("x")
      end)
      assert.is_true(loop.run(5))
      assert.equal(1, #errors)
      assert.same({ true, true, true, true }, got)
    end)

    it("an onerror that raises: run() raises it, and run() again finishes the batch", function()
      local mine, peers = pairs_of(4)
      finally(function() closeall(mine); closeall(peers) end)
      local got, n, tasks = {}, 0, {}
      for i = 1, 4 do
        tasks[i] = loop.spawn(function()
          got[i] = mine[i]:recv(10)
          n = n + 1
          if n == 1 then error("first one fails") end
        end)
      end
      finally(function()        -- tasks stranded by a failure: end them
        for _, t in ipairs(tasks) do loop.cancel(t) end
        loop.run(1)
      end)
      sendall_later(peers)
      loop.onerror = function(err) error("handler: " .. tostring(err), 0) end
      local ok, err = pcall(loop.run, 5)
      assert.is_false(ok)
      assert.matches("handler: .*first one fails", err)
      loop.onerror = function(e) errors[#errors + 1] = { err = tostring(e) } end
      assert.is_true(loop.run(2))
      for i = 1, 4 do assert.equal("m" .. i, got[i]) end
    end)

    it("loop.stop mid-batch: every task of the batch still runs, run() again goes on", function()
      local mine, peers = pairs_of(4)
      finally(function() closeall(mine); closeall(peers) end)
      local got, second, n = {}, {}, 0
      for i = 1, 4 do
        loop.spawn(function()
          got[i] = mine[i]:recv(10)
          n = n + 1
          if n == 1 then loop.stop() end
          second[i] = mine[i]:recv(10)
        end)
      end
      sendall_later(peers)
      assert.is_false(loop.run(5))
      assert.equal(4, loop.count())
      -- the batch was not cut short: each task had its first message
      for i = 1, 4 do assert.equal("m" .. i, got[i]) end
      sendall_later(peers, "again")
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      for i = 1, 4 do assert.equal("again", second[i]) end
    end)
  end)

  describe("descriptors the loop has seen", function()
    it("a socket collected after a wait, its number reused: the new socket is waited on", function()
      local fd
      do
        local c, d = S.socketpair()
        fd = c:fileno()
        loop.spawn(function()
          assert.equal("a", c:recv(1))
        end)
        loop.spawn(function() loop.sleep(0.02); d:send("a") end)
        assert.is_true(loop.run(5))
        d:close()
        c = nil  -- luacheck: ignore
      end
      collectgarbage()
      collectgarbage()
      -- take descriptors until one has the number again
      local held = {}
      finally(function() closeall(held) end)
      local a, b = net.pair_with_fd(fd, held)
      held[#held + 1], held[#held + 2] = a, b
      assert.is_not_nil(a, "the number was not reused")
      local got
      loop.spawn(function() got = { a:recv(5) } end)
      loop.spawn(function() loop.sleep(0.05); b:send("later") end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ "later" }, got)
    end)

    it("detach() of a socket a task waits on: the task gets EBADF, the descriptor lives on", function()
      local c, d = S.socketpair()
      local w
      finally(function() net.closeall(c, d, w) end)
      local got, fd
      loop.spawn(function() got = { c:recv(5) } end)
      loop.spawn(function()
        loop.sleep(0.02)
        fd = c:detach()
      end)
      assert.is_true(loop.run(5))
      assert.same({ nil, "recv: socket closed while waiting", "EBADF" }, got)
      assert.is_number(fd)
      w = assert(S.fromfd(fd))
      w:settimeout(nil)  -- fromfd sees O_NONBLOCK: make it a blocking socket again
      local again
      loop.spawn(function() again = { w:recv(5) } end)
      loop.spawn(function() loop.sleep(0.02); d:send("alive") end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ "alive" }, again)
    end)

    it("a task waits on an integer descriptor and on a table with pollfd()", function()
      local c, d = S.socketpair()
      local e, f = S.socketpair()
      finally(function() net.closeall(c, d, e, f) end)
      local pollable = { pollfd = function() return e:fileno() end }
      local got = {}
      loop.spawn(function() got.int = { loop.wait(c:fileno(), "r", 2) } end)
      loop.spawn(function() got.tbl = { loop.wait(pollable, "r", 2) } end)
      loop.spawn(function()
        loop.sleep(0.02)
        d:send("1")
        f:send("2")
      end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ true }, got.int)
      assert.same({ true }, got.tbl)
    end)

    it("a pollfd() that raises: the waiting task gets the error, the loop goes on", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      -- the first call is loop.wait's own readiness check; the second is the
      -- scheduler's, when it links the task
      local calls = 0
      local bad = { pollfd = function()
        calls = calls + 1
        if calls > 1 then error("no descriptor today") end
        return c:fileno()
      end }
      local after, other
      loop.spawn(function()
        loop.wait(bad, "r")
        after = true
      end)
      loop.spawn(function() other = c:recv(5) end)
      loop.spawn(function() loop.sleep(0.02); d:send("fine") end)
      assert.is_true(loop.run(5))
      assert.equal(1, #errors)
      assert.matches("no descriptor today", errors[1].err)
      assert.equal(2, calls)
      assert.is_nil(after)
      assert.equal("fine", other)
    end)
  end)

  -- A socket call in the task the scheduler is resuming links that task as a
  -- waiter itself and yields no values (bsd_shared in csrc/bsdsocket.h);
  -- any other thread must not be taken for it.
  describe("socket calls that link their task themselves", function()
    -- In a task, outside(c) makes a recv on c (timeout 0.05 s) that must
    -- not be taken for the task's own, and returns its results packed:
    -- waiting outside the loop, it times out. Then the task's own recv gets
    -- what the peer sends 0.1 s later.
    local function outside_then_own(outside)
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local got, own
      loop.spawn(function()
        c:settimeout(0.05)
        got = outside(c)
        c:settimeout(nil)
        own = { c:recv(5) }
      end)
      loop.spawn(function() loop.sleep(0.1); d:send("later") end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ "later" }, own)
      assert.equal(3, got.n)
      assert.is_nil(got[1])
      assert.equal("ETIMEDOUT", got[3])
    end

    it("a coroutine that a task resumes is not the task: its recv waits outside the loop", function()
      outside_then_own(function(c)
        return table.pack(coroutine.wrap(function() return c:recv(5) end)())
      end)
    end)

    it("a coroutine of S._tasks resumed by hand inside a task still yields the wait values", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      local yielded, resumed
      c:settimeout(1)  -- taken for no task, it would wait here
      loop.spawn(function()
        local co = coroutine.create(function() return c:recv(5) end)
        S._tasks[co] = true
        yielded = { coroutine.resume(co) }
        d:send("hand")
        resumed = { coroutine.resume(co, true) }
        S._tasks[co] = nil
      end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      -- 1: read
      assert.same({ true, "bsdsocket.wait", c, 1 }, { yielded[1], yielded[2], yielded[3], yielded[4] })
      assert.same({ true, "hand" }, resumed)
    end)

    it("a socket call where the task cannot yield (a sort comparator) waits outside the loop", function()
      outside_then_own(function(c)
        local r
        table.sort({ 2, 1 }, function(x, y)
          r = r or table.pack(c:recv(5))
          return x < y
        end)
        return r
      end)
    end)

    it("a reader and a writer of one socket, both linked by their calls, both see its close", function()
      local c, d = S.socketpair()
      finally(function() net.closeall(c, d) end)
      -- fill c's send buffer so that a sendall waits
      assert.equal("EAGAIN", net.fill(c))
      local chunk = string.rep("x", 65536)
      local r, w
      loop.spawn(function() r = { c:recv(5) } end)
      loop.spawn(function() w = { c:sendall(chunk) } end)
      loop.spawn(function() loop.sleep(0.02); c:close() end)
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ nil, "recv: socket closed while waiting", "EBADF" }, r)
      assert.is_nil(w[1])
      assert.equal("EBADF", w[3])
    end)

    it("tasks waiting with deadlines, linked by their calls, time out in deadline order", function()
      local mine, peers = pairs_of(5)
      finally(function() closeall(mine); closeall(peers) end)
      local order = {}
      for i = 5, 1, -1 do
        loop.spawn(function()
          mine[i]:settimeout(0.01 * i)
          local _, _, code = mine[i]:recv(5)
          order[#order + 1] = { i, code }
        end)
      end
      assert.is_true(loop.run(5))
      assert.same({}, errors)
      assert.same({ { 1, "ETIMEDOUT" }, { 2, "ETIMEDOUT" }, { 3, "ETIMEDOUT" },
                    { 4, "ETIMEDOUT" }, { 5, "ETIMEDOUT" } }, order)
    end)
  end)
end)
