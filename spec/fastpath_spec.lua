-- The first-try paths of send(data), sendall(data), sendto(data, addr) and
-- recv(max) (socket.c: they make their system call before the I/O loop's
-- set-up) give exactly the results of the full path: counts, EAGAIN on a
-- timeout-0 socket with events() updated, errors naming the peer, partial
-- sends finished by the loop.
local net = require "helpers.net"
local loop = require "bsdsocket.loop"
local S = net.S

describe("first-try paths", function()
  it("sendall on a full non-blocking socket: nil, msg, 'EAGAIN', 0 and events 'w'; partial counts", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    a:settimeout(0)
    local chunk = ("x"):rep(65536)
    local ok, msg, code, sent
    for _ = 1, 1000 do
      ok, msg, code, sent = a:sendall(chunk)
      if not ok then break end
    end
    assert.is_nil(ok)
    assert.equal("EAGAIN", code)
    assert.matches("^sendall", msg)
    assert.is_true(sent >= 0 and sent < #chunk)
    assert.equal("w", a:events())
    -- recv on the other end, non-blocking: data, then EAGAIN and events 'r'
    b:settimeout(0)
    local total = 0
    while true do
      local d, _, c = b:recv(65536)
      if not d then
        assert.equal("EAGAIN", c)
        break
      end
      total = total + #d
    end
    assert.is_true(total > 0)
    assert.equal("r", b:events())
  end)

  it("recv and send name the peer in their errors; sendto names the address", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 })
    local port = cli:getsockname().port
    cli:close()
    local d, msg, code = conn:recv(100)
    assert.is_nil(d)
    assert.equal("ECONNRESET", code)
    -- after a reset the kernel names no peer: the local end is named (as ever)
    assert.matches("^recv .*: Connection reset by peer$", msg)
    assert.is_truthy(port)
    local n, err2, code2
    for _ = 1, 10 do
      n, err2, code2 = conn:send("x")
      if not n then break end
    end
    assert.is_nil(n)
    assert.matches("^send ", err2)
    assert.is_truthy(code2 == "EPIPE" or code2 == "ECONNRESET", code2)
    local u <close> = net.udp()
    local r, msg3 = u:sendto("x", S.addr("::1", 9))
    assert.is_nil(r)
    assert.matches("^sendto %[::1%]:9: ", msg3)
  end)

  it("a partial sendall in a task is finished by the loop", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
    local big = ("y"):rep(3 << 20)
    local ok, got
    loop.spawn(function() ok = cli:sendall(big) end)
    loop.spawn(function()
      local parts, have = {}, 0
      while have < #big do
        local s = assert(conn:recv(65536))
        parts[#parts + 1] = s
        have = have + #s
      end
      got = table.concat(parts)
    end)
    assert.is_true(loop.run(20))
    assert.is_true(ok)
    assert.equal(big, got)
  end)

  it("recv in a task after an empty queue waits, then reads; one that times out says so", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local r = {}
    loop.spawn(function()
      conn:settimeout(2)
      r[1] = conn:recv(100)                  -- nothing yet: waits
      conn:settimeout(0.05)
      r[2] = { conn:recv(100) }              -- nothing comes: times out
    end)
    loop.spawn(function()
      loop.sleep(0.02)
      assert(cli:sendall("late"))
    end)
    assert.is_true(loop.run(5))
    assert.equal("late", r[1])
    assert.is_nil(r[2][1])
    assert.equal("ETIMEDOUT", r[2][3])
  end)
end)
