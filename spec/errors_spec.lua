-- Errors: S.errno and S.strerror, the nil, message, code convention and the
-- message format, raised programming mistakes, and no descriptor leaks on
-- error paths.
local net = require "helpers.net"
local S = net.S

local linux = io.open("/proc/self/stat") ~= nil and io.open("/proc/sys/kernel/ostype") ~= nil

describe("S.errno", function()
  it("maps names to numbers and numbers back to names", function()
    for _, name in ipairs({ "EAGAIN", "EINTR", "EPIPE", "ECONNREFUSED", "ECONNRESET",
                            "ETIMEDOUT", "EINPROGRESS", "EADDRINUSE", "ENOTCONN",
                            "ENOTSOCK", "EINVAL", "EBADF", "ENOENT", "EAFNOSUPPORT" }) do
      local n = S.errno[name]
      assert.equal("integer", math.type(n), name)
      assert.equal(name, S.errno[n])
    end
  end)

  it("has the platform's numbers (Linux)", function()
    if not linux then pending("Linux numbers only") end
    assert.equal(11, S.errno.EAGAIN)
    assert.equal("EAGAIN", S.errno[11])
    assert.equal(111, S.errno.ECONNREFUSED)
    assert.equal(32, S.errno.EPIPE)
  end)

  it("names EWOULDBLOCK's number EAGAIN where they are equal", function()
    if S.errno.EWOULDBLOCK and S.errno.EWOULDBLOCK == S.errno.EAGAIN then
      assert.equal("EAGAIN", S.errno[S.errno.EWOULDBLOCK])
    else
      assert.equal("EAGAIN", S.errno[S.errno.EAGAIN])
    end
  end)

  it("gives nil for names and numbers it does not know", function()
    assert.is_nil(S.errno.ENOSUCHERROR)
    assert.is_nil(S.errno[987654])
  end)
end)

describe("S.strerror", function()
  it("gives the system's message for a number or a name", function()
    local byname, bynumber = S.strerror("ECONNREFUSED"), S.strerror(S.errno.ECONNREFUSED)
    assert.equal(bynumber, byname)
    assert.equal("string", type(byname))
    if linux then assert.equal("Connection refused", byname) end
  end)

  it("raises for an unknown name or a wrong type", function()
    assert.has_error(function() S.strerror("ENOSUCHERROR") end)
    assert.has_error(function() S.strerror({}) end)
  end)
end)

describe("the error convention", function()
  it("failures return nil, '<call> <peer>: <reason>', errno name", function()
    local srv, port = net.server()
    srv:close()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local ok, msg, code = s:connect("127.0.0.1", port)
    assert.is_nil(ok)
    assert.equal("connect 127.0.0.1:" .. port .. ": " .. S.strerror(code), msg)
    assert.equal("ECONNREFUSED", code)
  end)

  it("where there is no peer the message is '<call>: <reason>'", function()
    local msg, code = select(2, S.socket(S.AF_MAX or 4000, S.SOCK_STREAM))
    assert.equal("socket: " .. S.strerror(code), msg)
    local u <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))   -- unbound, unconnected
    u:settimeout(0)
    local _, msg2, code2 = u:recv(10)
    assert.equal("EAGAIN", code2)
    assert.equal("recv: " .. S.strerror("EAGAIN"), msg2)
  end)

  it("a socket's own end is never named as the peer: it is '(local <addr>)'", function()
    local u = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))   -- bound, unconnected
    finally(function() u:close() end)
    assert(u:bind("127.0.0.1", 0))
    local mine = u:getsockname().port
    u:settimeout(0)
    local _, msg = u:recv(10)
    assert.equal("recv (local 127.0.0.1:" .. mine .. "): " .. S.strerror("EAGAIN"), msg)
    -- after a reset the peer is gone: the message names our end as local
    local a, b = net.tcp_pair()
    finally(function() net.closeall(a, b) end)
    local port = a:getsockname().port
    b:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 0 })
    b:close()
    net.sleep(0.05)
    local code
    for _ = 1, 3 do  -- the first send may still be accepted before the RST is seen
      local _
      _, msg, code = a:send("x")
      if code then break end
      net.sleep(0.02)
    end
    assert.is_truthy(code == "ECONNRESET" or code == "EPIPE", tostring(code))
    assert.equal("send (local 127.0.0.1:" .. port .. "): " .. S.strerror(code), msg)
  end)

  it("a connected socket's messages name the peer", function()
    local a, b = net.tcp_pair()
    finally(function() net.closeall(a, b) end)
    a:settimeout(0.05)
    local _, msg, code = a:recv(10)
    assert.equal("ETIMEDOUT", code)
    assert.equal("recv 127.0.0.1:" .. a:getpeername().port .. ": timed out", msg)
  end)
end)

describe("programming mistakes raise", function()
  it("a method on a closed socket raises 'attempt to use a closed socket'", function()
    local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    s:close()
    local calls = {
      bind = { "127.0.0.1", 0 }, listen = {}, accept = {}, connect = { "127.0.0.1", 1 },
      send = { "x" }, sendall = { "x" }, recv = { 1 }, recvall = { 1 },
      sendto = { "x", "127.0.0.1", 1 }, recvfrom = { 1 }, shutdown = { "rw" },
      getsockname = {}, getpeername = {}, fileno = {}, pollfd = {},
      setsockopt = { S.SOL_SOCKET, S.SO_REUSEADDR, true },
      getsockopt = { S.SOL_SOCKET, S.SO_TYPE }, setblocking = { false },
    }
    for name, args in pairs(calls) do
      assert.error_matches(function() s[name](s, table.unpack(args)) end,
        "attempt to use a closed socket", 1, true, name)
    end
  end)

  it("wrong argument types raise instead of failing quietly", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert.has_error(function() S.socket("inet", S.SOCK_STREAM) end)
    assert.has_error(function() S.socket(S.AF_INET) end)
    assert.has_error(function() s:send() end)
    assert.has_error(function() s:send({ {} }) end)
    assert.has_error(function() s:recv("many") end)
    assert.has_error(function() s:recv(-1) end)
    assert.has_error(function() s:recvall(-1) end)
    assert.has_error(function() s:bind(true) end)
    assert.has_error(function() s:connect({}) end)
    assert.has_error(function() s:bind("127.0.0.1", 65536) end)
    assert.has_error(function() s:connect("127.0.0.1", -1) end)
    assert.has_error(function() s:sendto("x", "127.0.0.1", 70000) end)
  end)

  it("a method called on something that is not a socket raises", function()
    local send = getmetatable(assert(S.socket(S.AF_INET, S.SOCK_DGRAM))).__index.send
    assert.has_error(function() send("not a socket", "x") end)
    assert.has_error(function() send(S.addr("127.0.0.1", 1), "x") end)
    assert.has_error(function() send(io.stdout, "x") end)
  end)

  it("a system failure on a valid socket returns nil, msg, code and does not raise", function()
    local srv <close> = net.server()
    local ok, msg, code = srv:recv(10)       -- a listener has no connection
    assert.is_nil(ok)
    assert.equal("string", type(msg))
    assert.equal("ENOTCONN", code)
  end)
end)

describe("no descriptor leaks on error paths", function()
  it("200 refused connects open no descriptor that stays open", function()
    local srv, port = net.server()
    srv:close()
    local before = net.fds()
    for _ = 1, 200 do
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert.equal("ECONNREFUSED", select(3, s:connect("127.0.0.1", port)))
    end
    assert.same({}, net.newfds(before))
  end)

  it("200 failed binds open no descriptor that stays open", function()
    local srv <close>, port = net.server()     -- holds the port
    local before = net.fds()
    for _ = 1, 200 do
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert.equal("EADDRINUSE", select(3, s:bind("127.0.0.1", port)))
    end
    assert.same({}, net.newfds(before))
    assert.is_true(srv:getsockopt(S.SOL_SOCKET, S.SO_ACCEPTCONN))
  end)

  it("200 failed socket, accept and resolver calls open no descriptor that stays open", function()
    local srv <close> = net.server()
    srv:settimeout(0)
    local before = net.fds()
    for _ = 1, 200 do
      assert.is_nil(S.socket(S.AF_MAX or 4000, S.SOCK_STREAM))
      assert.equal("EAGAIN", select(3, srv:accept()))
      assert.is_nil(S.getaddrinfo("localhost", 80, { flags = S.AI_NUMERICHOST }))
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      assert.has_error(function() s:connect("127.0.0.1", 99999) end)
    end
    assert.same({}, net.newfds(before))
  end)

  it("sockets dropped after raised errors are collected", function()
    local before = net.fds()
    for _ = 1, 100 do
      pcall(function()
        local s = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
        s:bind("127.0.0.1", -5)                   -- raises; s is never closed
      end)
    end
    assert.same({}, net.newfds(before))           -- fds/newfds collect garbage first
  end)
end)
