-- luacheck: std +busted
-- The pollable-object protocol (pollfd, events, timeout) as other event
-- loops read it: cqueues waits on sock:pollfd() for sock:events() at most
-- sock:timeout() seconds (nil: no limit of its own).
local S = require "bsdsocket"
local net = require "helpers.net"

describe("the pollable-object protocol", function()
  it("timeout() is the socket's timeout, or nil where it has none to honour", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    assert.is_nil(a:timeout())            -- blocking
    a:settimeout(2.5)
    assert.equal(2.5, a:timeout())
    a:settimeout(0)                       -- non-blocking: the poller may wait as long as it likes
    assert.is_nil(a:timeout())
    assert.equal(0, a:gettimeout())       -- gettimeout still tells the mode
  end)

  it("events() is 'w' after a non-blocking connect said EINPROGRESS, 'r' after a recv said EAGAIN", function()
    -- a full backlog keeps the connect in progress
    local srv = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(srv:bind("127.0.0.1", 0))
    assert(srv:listen(0))
    local port = srv:getsockname().port
    local held = {}
    finally(function() net.closeall(srv, table.unpack(held)) end)
    local code
    for i = 1, 16 do
      local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      held[i] = c
      c:settimeout(0)
      code = select(3, c:connect("127.0.0.1", port))
      if code == "EINPROGRESS" then
        assert.equal("w", c:events())
        break
      end
    end
    assert.equal("EINPROGRESS", code)
    local a, b = S.socketpair()
    held[#held + 1], held[#held + 2] = a, b
    a:settimeout(0)
    assert.equal("EAGAIN", select(3, a:recv(1)))
    assert.equal("r", a:events())
  end)

  it("a call with MSG_DONTWAIT on a blocking socket returns EAGAIN at once", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    local dt, ok, msg, code = net.timed(a.recv, a, 10, S.MSG_DONTWAIT)
    assert.is_nil(ok)
    assert.equal("EAGAIN", code)
    assert.matches("^recv", msg)
    assert.is_true(dt < 0.5)
    assert.equal("EAGAIN", select(3, a:recvfrom(10, S.MSG_DONTWAIT)))
    assert.equal("EAGAIN", select(3, a:recvmsg(10, nil, S.MSG_DONTWAIT)))
    assert.equal("EAGAIN", select(3, a:recv_into(S.buffer(10), nil, nil, S.MSG_DONTWAIT)))
    b:send("x")
    assert.equal("x", a:recv(10, S.MSG_DONTWAIT))
  end)

  describe("with the real cqueues", function()
    local ok, cqueues = pcall(require, "cqueues")
    if not ok then
      pending("cqueues is not installed (make deps installs lua-cqueues)")
      return
    end

    it("cqueues.poll on a non-blocking socket waits for data instead of spinning", function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      a:settimeout(0)
      local polls, got = 0, nil
      local cq = cqueues.new()
      cq:wrap(function()
        while true do
          local data, _, code = a:recv(10)
          if data then got = data break end
          assert.equal("EAGAIN", code)
          polls = polls + 1
          cqueues.poll(a)
        end
      end)
      cq:wrap(function()
        cqueues.sleep(0.3)
        b:send("hello")
      end)
      local deadline = S.monotime() + 5
      while not cq:empty() and S.monotime() < deadline do assert(cq:step(0.1)) end
      assert.equal("hello", got)
      assert.is_true(polls <= 3, "cqueues polled " .. polls .. " times")
    end)

    it("cqueues.poll honours a socket's own timeout", function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      a:settimeout(0.2)
      local elapsed
      local cq = cqueues.new()
      cq:wrap(function()
        local t0 = S.monotime()
        cqueues.poll(a)  -- cqueues hands the object back when its timeout expires
        elapsed = S.monotime() - t0
      end)
      local deadline = S.monotime() + 5
      while not cq:empty() and S.monotime() < deadline do assert(cq:step(0.1)) end
      assert.is_true(elapsed >= 0.15 and elapsed < 2, "waited " .. tostring(elapsed))
    end)
  end)
end)
