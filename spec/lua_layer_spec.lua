-- luacheck: std +busted
-- luacheck: ignore 211/_.*
-- (variables named _x hold to-be-closed sockets that are only there to be closed)
-- The Lua conveniences of lua/bsdsocket.lua: tcp_connect, tcp_listen, udp.
local S = require "bsdsocket"
local net = require "helpers.net"

-- A port on 127.0.0.1 that refuses connections: bound, not listening.
local function refusing()
  local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(s:bind("127.0.0.1", 0))
  return s, s:getsockname().port
end

-- A listener whose accept queue is full: new SYNs go unanswered, so a
-- connect to it times out. nil when this kernel answers them anyway.
local function unanswering()
  local srv = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  assert(srv:bind("127.0.0.1", 0))
  assert(srv:listen(0))
  local port = srv:getsockname().port
  local keep = { srv }
  for _ = 1, 8 do
    local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    c:settimeout(0)
    c:connect("127.0.0.1", port)
    keep[#keep + 1] = c
  end
  local probe <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
  probe:settimeout(0.2)
  local _, _, code = probe:connect("127.0.0.1", port)
  local function close() for _, s in ipairs(keep) do s:close() end end
  if code ~= "ETIMEDOUT" then close() return nil end
  return port, close
end

-- Replaces S.getaddrinfo with one returning list; after_each puts the real
-- one back. (busted keeps only the last finally() of a test.)
local REAL_GETADDRINFO = S.getaddrinfo
after_each(function() S.getaddrinfo = REAL_GETADDRINFO end)
local function fake_resolver(list)
  local asked = {}
  S.getaddrinfo = function(host, port, hints)
    asked[#asked + 1] = { host = host, port = port, hints = hints }
    return list
  end
  return asked
end

local function entry(host, port)
  local a = assert(S.addr(host, port))
  return { family = a.family, socktype = S.SOCK_STREAM, protocol = S.IPPROTO_TCP, addr = a }
end

describe("S.tcp_connect", function()
  it("connects by address and by name, with no timeout by default", function()
    local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
    local port = srv:getsockname().port
    local c <close> = assert(S.tcp_connect("127.0.0.1", port))
    assert.equal(srv:getsockname(), c:getpeername())
    assert.is_nil(c:gettimeout())
    local d <close> = assert(S.tcp_connect("localhost", port, 3))
    assert.equal(3, d:gettimeout())             -- the timeout stays, as in Python
    local e <close> = assert(S.tcp_connect("127.0.0.1", tostring(port)))
    assert.equal(port, e:getpeername().port)
  end)

  it("connects over IPv6", function()
    local srv <close>, err = S.tcp_listen("::1", 0)
    if not srv then pending("no IPv6 loopback: " .. err) return end
    local c <close> = assert(S.tcp_connect("::1", srv:getsockname().port, 2))
    assert.equal(S.AF_INET6, c:getpeername().family)
  end)

  it("returns nil, msg, code for a refused connection", function()
    local _refuser <close>, port = refusing()
    assert.same({ nil, ("connect 127.0.0.1:%d: Connection refused"):format(port), "ECONNREFUSED" },
      { S.tcp_connect("127.0.0.1", port) })
  end)

  it("returns the resolver's error for a name that does not resolve", function()
    local sock, msg, code = S.tcp_connect("no-such-host.invalid", 80)
    assert.is_nil(sock)
    assert.matches("no%-such%-host%.invalid", msg)
    assert.matches("^EAI_", code)
  end)

  it("tries every address in order until one connects", function()
    local _refuser <close>, closed = refusing()
    local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
    local open = srv:getsockname().port
    local asked = fake_resolver({ entry("127.0.0.1", closed), entry("127.0.0.1", closed), entry("127.0.0.1", open) })
    local c <close> = assert(S.tcp_connect("multi.example.test", 8080, 2))
    assert.equal(open, c:getpeername().port)
    assert.equal("multi.example.test", asked[1].host)
    assert.equal(8080, asked[1].port)
    assert.equal(S.SOCK_STREAM, asked[1].hints.socktype)
  end)

  it("returns the last error when no address works, and leaks no descriptor", function()
    local _r1 <close>, p1 = refusing()
    local _r2 <close>, p2 = refusing()
    fake_resolver({ entry("127.0.0.1", p1), entry("127.0.0.1", p2) })
    local before = net.fds()
    for _ = 1, 20 do
      local sock, msg, code = S.tcp_connect("both.example.test", 1)
      assert.is_nil(sock)
      assert.equal(("connect 127.0.0.1:%d: Connection refused"):format(p2), msg)
      assert.equal("ECONNREFUSED", code)
    end
    assert.same({}, net.newfds(before))   -- garbage collected first
  end)

  it("bounds each attempt by the timeout and moves on to the next address", function()
    local silent, close = unanswering()
    if not silent then pending("this kernel answers SYNs to a full accept queue") return end
    finally(close)
    local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
    fake_resolver({ entry("127.0.0.1", silent), entry("127.0.0.1", srv:getsockname().port) })
    local t0 = S.monotime()
    local c <close> = assert(S.tcp_connect("slow.example.test", 1, 0.3))
    local dt = S.monotime() - t0
    assert.equal(srv:getsockname(), c:getpeername())
    assert.is_true(dt >= 0.25 and dt < 2, "took " .. dt)
    fake_resolver({ entry("127.0.0.1", silent), entry("127.0.0.1", silent) })
    t0 = S.monotime()
    local sock, _, code = S.tcp_connect("slow.example.test", 1, 0.2)
    dt = S.monotime() - t0
    assert.is_nil(sock)
    assert.equal("ETIMEDOUT", code)
    assert.is_true(dt >= 0.35 and dt < 2, "took " .. dt)    -- two attempts
  end)

  it("works inside a bsdsocket.loop task", function()
    local loop = require "bsdsocket.loop"
    local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
    local port, got = srv:getsockname().port, nil
    loop.spawn(function()
      local conn <close> = assert(srv:accept())
      assert(conn:sendall("from the server task\n"))
    end)
    loop.spawn(function()
      local c <close> = assert(S.tcp_connect("127.0.0.1", port, 5))
      got = S.reader(c):line()
    end)
    loop.run(5)
    assert.equal("from the server task", got)
  end)

  it("raises on arguments of the wrong type", function()
    assert.has_error(function() S.tcp_connect(nil, 80) end)
    assert.has_error(function() S.tcp_connect("127.0.0.1") end)
    assert.has_error(function() S.tcp_connect("127.0.0.1", 70000) end,
      "bad argument #2 to 'tcp_connect' (port out of range 0..65535)")
    assert.has_error(function() S.tcp_connect("127.0.0.1", 1.5) end)
    assert.has_error(function() S.tcp_connect("127.0.0.1", 80, -1) end)
    assert.has_error(function() S.tcp_connect("127.0.0.1", 80, 0 / 0) end)
    assert.has_error(function() S.tcp_connect("127.0.0.1", 80, "5") end)
  end)
end)

describe("S.tcp_listen", function()
  it("binds, sets SO_REUSEADDR and listens", function()
    local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
    local a = srv:getsockname()
    assert.equal("127.0.0.1", a.host)
    assert.is_true(a.port > 0)
    assert.is_true(srv:getsockopt(S.SOL_SOCKET, S.SO_REUSEADDR))
    assert.is_true(srv:getsockopt(S.SOL_SOCKET, S.SO_ACCEPTCONN))
    local c <close> = assert(S.tcp_connect("127.0.0.1", a.port, 2))
    local _conn <close>, peer = assert(srv:accept())
    assert.equal(c:getsockname(), peer)
  end)

  it("takes nil or \"*\" for every IPv4 address, and a backlog", function()
    local a <close> = assert(S.tcp_listen(nil, 0))
    assert.equal("0.0.0.0", a:getsockname().host)
    local b <close> = assert(S.tcp_listen("*", 0, 5))
    assert.equal("0.0.0.0", b:getsockname().host)
  end)

  it("can listen again at once on a port with a connection in TIME_WAIT", function()
    local srv = assert(S.tcp_listen("127.0.0.1", 0))
    local port = srv:getsockname().port
    local c = assert(S.tcp_connect("127.0.0.1", port))
    local conn = assert(srv:accept())
    conn:close()                              -- the server closes first: TIME_WAIT
    assert.equal("", c:recv(1))
    c:close()
    srv:close()
    local again <close> = assert(S.tcp_listen("127.0.0.1", port))
    assert.equal(port, again:getsockname().port)
  end)

  it("returns EADDRINUSE for a port someone listens on", function()
    local srv <close> = assert(S.tcp_listen("127.0.0.1", 0))
    local sock, msg, code = S.tcp_listen("127.0.0.1", srv:getsockname().port)
    assert.is_nil(sock)
    assert.matches("^bind 127%.0%.0%.1:%d+: ", msg)
    assert.equal("EADDRINUSE", code)
  end)

  it("raises on arguments of the wrong type", function()
    assert.has_error(function() S.tcp_listen(1, 0) end)
    assert.has_error(function() S.tcp_listen("127.0.0.1", -1) end)
    assert.has_error(function() S.tcp_listen("127.0.0.1", 0, "x") end)
  end)
end)

describe("S.udp", function()
  it("makes an unbound IPv4 socket, or one of the given family", function()
    local u <close> = assert(S.udp())
    assert.equal(S.AF_INET, u:getsockname().family)
    assert.equal(0, u:getsockname().port)
    assert.equal(S.SOCK_DGRAM, u:getsockopt(S.SOL_SOCKET, S.SO_TYPE))
    local v <close> = assert(S.udp(S.AF_INET6))
    assert.equal(S.AF_INET6, v:getsockname().family)
  end)

  it("binds to host and port, port 0 or nil choosing a free one", function()
    local a <close> = assert(S.udp("127.0.0.1", 0))
    local b <close> = assert(S.udp("127.0.0.1"))
    assert.is_true(a:getsockname().port > 0)
    assert.is_true(b:getsockname().port > 0)
    local c <close> = assert(S.udp("*", 0))
    assert.equal("0.0.0.0", c:getsockname().host)
  end)

  it("carries datagrams between bound and unbound sockets", function()
    local server <close> = assert(S.udp("127.0.0.1", 0))
    local client <close> = assert(S.udp())
    server:settimeout(2) client:settimeout(2)
    assert(client:sendto("ping", server:getsockname()))
    local data, from = server:recvfrom(100)
    assert.equal("ping", data)
    assert(server:sendto("pong", from))
    local answer, sender = client:recvfrom(100)
    assert.equal("pong", answer)
    assert.equal(server:getsockname(), sender)
  end)

  it("returns EADDRINUSE for a bound port", function()
    local a <close> = assert(S.udp("127.0.0.1", 0))
    local sock, _, code = S.udp("127.0.0.1", a:getsockname().port)
    assert.is_nil(sock)
    assert.equal("EADDRINUSE", code)
  end)

  it("raises on arguments of the wrong type", function()
    assert.has_error(function() S.udp({}, 0) end)
    assert.has_error(function() S.udp("127.0.0.1", 65536) end)
  end)
end)

describe("require \"bsdsocket\"", function()
  it("re-exports the whole C module", function()
    local core = require "bsdsocket.core"
    for k, v in pairs(core) do assert.equal(v, S[k], k) end
    assert.is_function(S.reader)
  end)
end)
