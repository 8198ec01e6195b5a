-- Timeouts and blocking modes: settimeout/gettimeout/setblocking, timed-out
-- calls, non-blocking calls, and calls interrupted by signals.
local net = require "helpers.net"
local S = net.S

describe("settimeout, gettimeout and setblocking", function()
  it("a new socket blocks forever: gettimeout() is nil", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert.is_nil(s:gettimeout())
  end)

  it("settimeout sets seconds, 0 or nil, and gettimeout reads them back", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    s:settimeout(0.25)
    assert.equal(0.25, s:gettimeout())
    s:settimeout(3)
    assert.equal(3, s:gettimeout())
    s:settimeout(0)
    assert.equal(0, s:gettimeout())
    s:settimeout(nil)
    assert.is_nil(s:gettimeout())
    s:settimeout(1)
    s:settimeout()                                  -- no argument: nil
    assert.is_nil(s:gettimeout())
  end)

  it("setblocking(false) is settimeout(0) and setblocking(true) is settimeout(nil)", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    s:setblocking(false)
    assert.equal(0, s:gettimeout())
    s:setblocking(true)
    assert.is_nil(s:gettimeout())
  end)

  it("raises for a negative timeout, NaN or a non-number", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    assert.has_error(function() s:settimeout(-1) end)
    assert.has_error(function() s:settimeout(0 / 0) end)
    assert.has_error(function() s:settimeout("soon") end)
    assert.is_nil(s:gettimeout())                   -- unchanged by the failures
  end)
end)

describe("a call with a timeout", function()
  it("recv on a silent peer returns nil, msg, 'ETIMEDOUT' after about the timeout", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    conn:settimeout(0.2)
    local dt, data, msg, code = net.timed(conn.recv, conn, 10)
    assert.is_nil(data)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(dt >= 0.15 and dt <= 2, "elapsed " .. dt)
    assert.equal("recv 127.0.0.1:" .. cli:getsockname().port .. ": timed out", msg)
    -- the socket still works afterwards
    assert(cli:sendall("late"))
    assert.equal("late", conn:recvall(4))
  end)

  it("accept with nobody connecting returns 'ETIMEDOUT'", function()
    local srv <close> = net.server()
    srv:settimeout(0.2)
    local dt, c, msg, code = net.timed(srv.accept, srv)
    assert.is_nil(c)
    assert.equal("ETIMEDOUT", code)
    assert.matches("^accept", msg)
    assert.is_true(dt >= 0.15 and dt <= 2, "elapsed " .. dt)
  end)

  it("recvfrom on a silent UDP socket returns 'ETIMEDOUT'", function()
    local u <close> = net.udp()
    u:settimeout(0.2)
    local dt, d, _, code = net.timed(u.recvfrom, u, 100)
    assert.is_nil(d)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(dt >= 0.15 and dt <= 2, "elapsed " .. dt)
  end)

  it("recvall that gets part of the data returns 'ETIMEDOUT'", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    assert(cli:sendall("abc"))
    conn:settimeout(0.2)
    local data, _, code = conn:recvall(10)
    assert.is_nil(data)
    assert.equal("ETIMEDOUT", code)
  end)

  it("sendall to a peer that does not read returns 'ETIMEDOUT' and the bytes sent", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:settimeout(0.3)
    local big = string.rep("x", 64 * 1024 * 1024)   -- far more than the buffers hold
    local ok, msg, code, sent = cli:sendall(big)
    assert.is_nil(ok)
    assert.equal("ETIMEDOUT", code)
    assert.matches("^send", msg)
    assert.is_true(math.type(sent) == "integer" and sent > 0 and sent < #big, tostring(sent))
  end)

  it("a call that can complete does so without waiting for the timeout", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    conn:settimeout(5)
    assert(cli:sendall("ready"))
    local dt, data = net.timed(conn.recvall, conn, 5)
    assert.equal("ready", data)
    assert.is_true(dt < 2, "elapsed " .. dt)
  end)
end)

describe("a non-blocking socket (timeout 0)", function()
  it("recv with nothing to read returns nil, msg, 'EAGAIN'", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    conn:settimeout(0)
    local data, msg, code = conn:recv(10)
    assert.is_nil(data)
    assert.equal("EAGAIN", code)
    assert.matches("^recv", msg)
  end)

  it("recvfrom and accept return 'EAGAIN' too", function()
    local u <close> = net.udp()
    u:setblocking(false)
    assert.equal("EAGAIN", select(3, u:recvfrom(10)))
    local srv <close> = net.server()
    srv:setblocking(false)
    assert.equal("EAGAIN", select(3, srv:accept()))
  end)

  it("send returns 'EAGAIN' once the buffers are full", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:settimeout(0)
    assert.equal("EAGAIN", net.fill(cli, 2000))
  end)

  it("connect returns 'EINPROGRESS' or succeeds, and the connection completes", function()
    local srv <close>, port = net.server()
    local cli <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    cli:settimeout(0)
    local ok, msg, code = cli:connect("127.0.0.1", port)
    if not ok then
      assert.equal("EINPROGRESS", code)
      assert.matches("^connect 127%.0%.0%.1:" .. port, msg)
    end
    local conn <close> = assert(srv:accept())      -- the listener blocks
    local peer
    for _ = 1, 200 do                               -- bounded wait for completion
      peer = cli:getpeername()
      if peer then break end
      net.sleep(0.01)
    end
    assert.equal(conn:getsockname(), peer)
    assert.equal(0, cli:getsockopt(S.SOL_SOCKET, S.SO_ERROR))
  end)
end)

describe("interrupted system calls (EINTR)", function()
  -- A child process blocks in recv; we stop and continue it with SIGSTOP and
  -- SIGCONT (Linux may then fail the wait with EINTR), then send data. The
  -- library retries, so the child prints what it received.
  local function stopped_child(setup)
    local srv <close>, port = net.server()
    local child = net.spawn([[
      local S = require "bsdsocket"
      local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert(s:connect("127.0.0.1", ]] .. port .. [[))
      ]] .. setup .. [[
      print("waiting") io.flush()
      print(s:recv(100))
    ]], 15)
    local ok, out, rc = pcall(function()
      local conn <close> = assert(srv:accept())
      for _ = 1, 250 do                             -- bounded wait for "waiting"
        if child.output():find("waiting") then break end
        net.sleep(0.02)
      end
      assert.matches("waiting", child.output())
      net.sleep(0.2)                                -- let it block in recv
      for _ = 1, 3 do
        child:kill("STOP"); net.sleep(0.1)
        child:kill("CONT"); net.sleep(0.1)
      end
      assert(conn:sendall("after the signals"))
      assert.is_true(child:wait(10))
      return child.output(), child.done()
    end)
    child:cleanup()
    if not ok then error(out, 0) end
    return out, rc
  end

  it("a blocking recv is retried and gets the data", function()
    local out, rc = stopped_child("")
    assert.equal("waiting\nafter the signals\n", out)
    assert.equal(0, rc)
  end)

  it("a recv with a timeout is retried and gets the data", function()
    local out, rc = stopped_child("s:settimeout(8)")
    assert.equal("waiting\nafter the signals\n", out)
    assert.equal(0, rc)
  end)

  it("a blocking recv with SO_RCVTIMEO set is retried and gets the data", function()
    local out, rc = stopped_child("assert(s:setsockopt(S.SOL_SOCKET, S.SO_RCVTIMEO, 8))")
    assert.equal("waiting\nafter the signals\n", out)
    assert.equal(0, rc)
  end)
end)
