-- S.buffer, recv_into and recvfrom_into, buffers as send data, and gathered
-- writes (send/sendall of a list): on real loopback sockets, with their
-- failures, timeouts, non-blocking sockets and bsdsocket.loop tasks.
local net = require "helpers.net"
local loop = require "bsdsocket.loop"
local S = net.S

describe("S.buffer", function()
  it("has a size, zero bytes, a name, and tostring(i, j) like string.sub", function()
    local b = S.buffer(8)
    assert.equal(8, #b)
    assert.equal(("\0"):rep(8), b:tostring())
    assert.equal("bsdsocket.buffer (8 bytes)", tostring(b))
    local c = S.buffer("hello world")
    assert.equal(11, #c)
    assert.equal("hello world", c:tostring())
    assert.equal("world", c:tostring(7))
    assert.equal("hello", c:tostring(1, 5))
    assert.equal("rld", c:tostring(-3))
    assert.equal("hello world", c:tostring(-100, 100))
    assert.equal("", c:tostring(5, 4))
    assert.equal("", S.buffer(0):tostring())
    assert.equal(0, #S.buffer(0))
  end)

  it("find works like string.find on its bytes", function()
    local b = S.buffer("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody")
    local s = b:tostring()
    for _, args in ipairs({
      { "\r\n\r\n" }, { "\r\n\r\n", 1, true }, { "HTTP/(%d)%.(%d)" }, { "x", 20 },
      { "o", -4 }, { "nothere" }, { "", 5 }, { "", 100 }, { "^GET" }, { "%.", 1, true },
      { ".", 1, true }, { "[" , 1, true },
    }) do
      assert.same({ s:find(table.unpack(args)) }, { b:find(table.unpack(args)) })
    end
  end)

  it("raises for a bad size or a wrong self", function()
    assert.has_error(function() S.buffer(-1) end)
    assert.has_error(function() S.buffer(2 ^ 40) end)
    assert.has_error(function() S.buffer({}) end)
    assert.has_error(function() S.buffer(8).tostring("x") end)
    assert.has_error(function() S.buffer(8):find() end)
  end)
end)

describe("recv_into", function()
  it("reads into the buffer and returns the count; 0 at EOF", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local b = S.buffer(16)
    assert(cli:sendall("abcdef"))
    assert.equal(6, conn:recv_into(b))
    assert.equal("abcdef", b:tostring(1, 6))
    assert(cli:sendall("XYZ"))
    assert.equal(2, conn:recv_into(b, 2, 10))       -- n = 2 at offset 10
    assert.equal("XY", b:tostring(11, 12))
    assert.equal(1, conn:recv_into(b, nil, 15))     -- the rest of the buffer: 1 byte
    assert.equal("Z", b:tostring(16, 16))
    assert.equal("abcdef", b:tostring(1, 6))        -- untouched
    cli:close()
    assert.equal(0, conn:recv_into(b))
  end)

  it("raises for an offset or a count outside the buffer, and for a wrong buffer", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local b = S.buffer(16)
    local ok, err = pcall(conn.recv_into, conn, b, 10, 7)
    assert.is_false(ok)
    assert.matches("10 bytes at offset 7 do not fit in a buffer of 16 bytes", err)
    ok, err = pcall(conn.recv_into, conn, b, nil, 17)
    assert.is_false(ok)
    assert.matches("offset 17 outside a buffer of 16 bytes", err)
    assert.has_error(function() conn:recv_into(b, -1) end)
    assert.has_error(function() conn:recv_into(b, nil, -1) end)
    assert.has_error(function() conn:recv_into("a string") end)
    assert.has_error(function() conn:recv_into(b, 1.5) end)
    conn:close()
    ok, err = pcall(conn.recv_into, conn, b)
    assert.is_false(ok)
    assert.matches("closed socket", err)
  end)

  it("times out, and is EAGAIN on a non-blocking socket", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local b = S.buffer(8)
    conn:settimeout(0.1)
    local n, msg, code = conn:recv_into(b)
    assert.is_nil(n)
    assert.equal("ETIMEDOUT", code)
    local _
    assert.equal("recv_into 127.0.0.1:" .. cli:getsockname().port .. ": timed out", msg)
    conn:settimeout(0)
    n, _, code = conn:recv_into(b)
    assert.is_nil(n)
    assert.equal("EAGAIN", code)
    assert(cli:sendall("later"))
    conn:settimeout(2)
    assert.equal(5, conn:recv_into(b))
  end)

  it("returns a failure for a reset connection", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 })
    cli:close()
    local n, _, code = conn:recv_into(S.buffer(8))
    assert.is_nil(n)
    assert.equal("ECONNRESET", code)
  end)

  it("suspends only its task in bsdsocket.loop, and honours the timeout there", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local got, timedout = {}, nil
    loop.spawn(function()
      local b = S.buffer(4)
      local total = 0
      while total < 12 do
        local n = assert(conn:recv_into(b))
        got[#got + 1] = b:tostring(1, n)
        total = total + n
      end
      conn:settimeout(0.05)
      timedout = select(3, conn:recv_into(b))
    end)
    loop.spawn(function()
      for _, part in ipairs({ "abcd", "efgh", "ijkl" }) do
        loop.sleep(0.01)
        assert(cli:sendall(part))
      end
    end)
    assert.is_true(loop.run(5))
    assert.equal("abcdefghijkl", table.concat(got))
    assert.equal("ETIMEDOUT", timedout)
  end)

  it("a task's recv_into on a socket closed meanwhile ends with EBADF", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local r
    loop.spawn(function() r = { conn:recv_into(S.buffer(4)) } end)
    loop.spawn(function() loop.sleep(0.02); conn:close() end)
    assert.is_true(loop.run(5))
    assert.is_nil(r[1])
    assert.equal("EBADF", r[3])
  end)
end)

describe("recvfrom_into", function()
  it("reads a datagram and names its sender", function()
    local a, aport = net.udp()
    local b = net.udp()
    finally(function() net.closeall(a, b) end)
    local buf = S.buffer(64)
    assert(b:sendto("datagram", "127.0.0.1", aport))
    local n, from = a:recvfrom_into(buf, nil, 4)
    assert.equal(8, n)
    assert.equal("datagram", buf:tostring(5, 12))
    assert.equal(b:getsockname(), from)
    -- a longer datagram is truncated to n
    assert(b:sendto("0123456789", a:getsockname()))
    assert.equal(3, a:recvfrom_into(buf, 3))
    assert.equal("012", buf:tostring(1, 3))
    a:settimeout(0)
    local r, _, code = a:recvfrom_into(buf)
    assert.is_nil(r)
    assert.equal("EAGAIN", code)
    assert.has_error(function() a:recvfrom_into(buf, 65) end)
  end)

  it("times out, raises on a closed socket, and times out in a task too", function()
    local a = net.udp()
    finally(function() net.closeall(a) end)
    local buf = S.buffer(16)
    a:settimeout(0.05)
    local n, msg, code = a:recvfrom_into(buf)
    assert.is_nil(n)
    assert.equal("ETIMEDOUT", code)
    assert.matches("^recvfrom_into", msg)
    local r
    loop.spawn(function() r = { a:recvfrom_into(buf) } end)
    assert.is_true(loop.run(5))
    assert.is_nil(r[1])
    assert.equal("ETIMEDOUT", r[3])
    a:close()
    assert.error_matches(function() a:recvfrom_into(buf) end, "closed socket")
  end)

  it("yields in a task until a datagram comes", function()
    local a, aport = net.udp()
    local b = net.udp()
    finally(function() net.closeall(a, b) end)
    local got
    loop.spawn(function()
      local buf = S.buffer(16)
      local n, from = a:recvfrom_into(buf)
      got = { buf:tostring(1, n), from }
    end)
    loop.spawn(function()
      loop.sleep(0.02)
      b:sendto("hi", "127.0.0.1", aport)
    end)
    assert.is_true(loop.run(5))
    assert.same({ "hi", b:getsockname() }, got)
  end)
end)

describe("buffers as send data", function()
  it("send, sendall and sendto take a buffer, with i, j", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local b = S.buffer("0123456789")
    assert.equal(10, cli:send(b))
    assert.equal(3, cli:send(b, 2, 4))
    assert.is_true(cli:sendall(b, -2))
    assert.is_true(cli:sendall("abcdef", 2, 3))
    assert.equal("0123456789123" .. "89" .. "bc", conn:recvall(17))
    local u, uport = net.udp()
    local v = net.udp()
    finally(function() net.closeall(u, v) end)
    assert.equal(10, v:sendto(b, "127.0.0.1", uport))
    assert.equal("0123456789", u:recv(100))
    assert.has_error(function() cli:send(42) end)
    assert.has_error(function() cli:sendall({}, 1) end)
  end)

  it("recv_into then send of the same buffer relays without strings", function()
    local a, b = net.tcp_pair()
    local c, d = net.tcp_pair()
    finally(function() net.closeall(a, b, c, d) end)
    local payload = ("x"):rep(100000) .. "end"
    local buf = S.buffer(8192)
    loop.spawn(function() assert(a:sendall(payload)); a:shutdown("w") end)
    loop.spawn(function()
      while true do
        local n = assert(b:recv_into(buf))
        if n == 0 then break end
        assert(c:sendall(buf, 1, n))
      end
      c:shutdown("w")
    end)
    local got = {}
    loop.spawn(function()
      while true do
        local s = assert(d:recv(65536))
        if s == "" then break end
        got[#got + 1] = s
      end
    end)
    assert.is_true(loop.run(10))
    assert.equal(payload, table.concat(got))
  end)
end)

describe("gathered writes", function()
  it("send of a list goes out in one sendmsg; sendall of a list sends every byte", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    assert.equal(11, cli:send({ "head", ":", S.buffer("body!!") }))
    assert.equal("head:body!!", conn:recvall(11))
    assert.equal(0, cli:send({}))
    assert.is_true(cli:sendall({}))
    assert.is_true(cli:sendall({ "a", "", "b" }))
    assert.equal("ab", conn:recvall(2))
    local parts = {}
    for i = 1, 1024 do parts[i] = ("%04d"):format(i) end
    assert.is_true(cli:sendall(parts))
    assert.equal(table.concat(parts), conn:recvall(4096))
    parts[1025] = "x"
    assert.has_error(function() cli:sendall(parts) end)
    assert.has_error(function() cli:send({ "a", 42 }) end)
    assert.has_error(function() cli:send({ "a" }, 1, 2) end)
  end)

  it("sendall of a big list survives partial writes, non-blocking waits and a task's yields", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
    local parts, n = {}, 0
    for i = 1, 200 do
      parts[i] = string.rep(string.char(65 + i % 26), 1000 + i)
      n = n + #parts[i]
    end
    local expect = table.concat(parts)
    local got = {}
    loop.spawn(function() assert.is_true(cli:sendall(parts)) end)
    loop.spawn(function()
      local have = 0
      while have < n do
        loop.sleep(0.001)
        local s = assert(conn:recv(7000))
        got[#got + 1] = s
        have = have + #s
      end
    end)
    assert.is_true(loop.run(10))
    assert.equal(expect, table.concat(got))
  end)

  it("sendall of a list times out with the count sent; EPIPE on a closed peer", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:settimeout(0.1)
    local big = { ("x"):rep(1 << 20), ("y"):rep(1 << 20), ("z"):rep(1 << 20), ("w"):rep(1 << 20) }
    local ok, _, code, sent = cli:sendall(big)
    assert.is_nil(ok)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(sent > 0 and sent < 4 << 20)
    cli:settimeout(0)
    local n, code2
    for _ = 1, 100 do                       -- the receive queue may take a bit more
      local _
      n, _, code2 = cli:send(big)
      if not n then break end
    end
    assert.is_nil(n)
    assert.equal("EAGAIN", code2)
    conn:close()
    cli:settimeout(1)
    local r, code3
    for _ = 1, 50 do
      local _
      r, _, code3 = cli:sendall({ "a", "b" })
      if not r and code3 ~= "ETIMEDOUT" then break end
    end
    assert.is_nil(r)
    assert.is_truthy(code3 == "EPIPE" or code3 == "ECONNRESET", code3)
    cli:close()
    assert.has_error(function() cli:send({ "a" }) end)
  end)
end)

describe("gathered writes honour MSG_DONTWAIT", function()
  -- fills a's send queue (and b's receive queue) until a send says EAGAIN
  local function fill(a)
    local code = net.fill(a)
    if code then assert.equal("EAGAIN", code) end
  end

  local function check(r)
    assert.is_nil(r[1])
    assert.equal("EAGAIN", r[3])
    assert.matches("^send", r[2])
  end

  it("send(list, nil, nil, MSG_DONTWAIT) on a full socket with a timeout is EAGAIN at once", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    fill(a)
    a:settimeout(2)            -- the old code waited this long: ETIMEDOUT
    local list = { "head", S.buffer("body") }
    check({ a:send(list, nil, nil, S.MSG_DONTWAIT) })
    check({ a:send("head", nil, nil, S.MSG_DONTWAIT) })  -- as the string form
    -- sendall of a list takes no flags: it follows the socket's timeout
    a:settimeout(0)
    local ok, _, code, sent = a:sendall(list)
    assert.is_nil(ok)
    assert.equal("EAGAIN", code)
    assert.equal(0, sent)
    -- with room again, the list goes out in one call
    b:settimeout(0)
    repeat local s = b:recv(1 << 20) until not s
    assert.equal(8, a:send(list, nil, nil, S.MSG_DONTWAIT))
  end)

  it("on a blocking socket without a timeout, in a child (the old code hung)", function()
    local out, ok, how, rc = net.run_lua([[
      local S = require "bsdsocket"
      local a, b = S.socketpair()
      a:settimeout(0)
      local chunk = ("f"):rep(65536)
      repeat until not a:send(chunk)
      a:settimeout(nil)
      local r = table.pack(a:send({ "x", "y" }, nil, nil, S.MSG_DONTWAIT))
      print(tostring(r[1]), r[3], r.n)
      b:close()
    ]], 5)
    assert.is_true(ok, ("child %s %s: %s"):format(how, rc, out))
    assert.equal("nil EAGAIN 3", (out:gsub("\t", " "):gsub("\n$", "")))
  end)

  it("inside a loop task: EAGAIN at once, no yield, for send of a list", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    local r, r2, ticks = nil, nil, 0
    loop.spawn(function()
      fill(a)
      a:settimeout(2)
      local before = ticks
      r = { a:send({ "a", "b" }, nil, nil, S.MSG_DONTWAIT) }
      r2 = ticks - before        -- other tasks ran only if this one yielded
    end)
    loop.spawn(function()
      for _ = 1, 200 do
        ticks = ticks + 1
        loop.sleep(0.005)
        if r then break end
      end
    end)
    assert.is_true(loop.run(10))
    check(r)
    assert.equal(0, r2)
  end)
end)

describe("no descriptor leaks", function()
  it("the new calls open nothing that stays open", function()
    local before = net.fds()
    for _ = 1, 20 do
      local cli, conn = net.tcp_pair()
      local b = S.buffer(100)
      cli:sendall({ "x", b })
      conn:recv_into(b)
      conn:settimeout(0)
      conn:recv_into(b)
      net.closeall(cli, conn)
    end
    assert.same({}, (net.newfds(before)))
  end)
end)
