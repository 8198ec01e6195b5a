-- setsockopt/getsockopt: each known option takes and gives its Lua type
-- (boolean, integer, seconds, linger table, multicast membership, address);
-- any other option takes and gives raw bytes.
local net = require "helpers.net"
local S = net.S

local function tcp() return assert(S.socket(S.AF_INET, S.SOCK_STREAM)) end
local function udp() return assert(S.socket(S.AF_INET, S.SOCK_DGRAM)) end
local function tcp6() return assert(S.socket(S.AF_INET6, S.SOCK_STREAM)) end

describe("boolean options", function()
  local cases = {
    { "SO_REUSEADDR", tcp, "SOL_SOCKET" },
    { "SO_REUSEPORT", tcp, "SOL_SOCKET" },
    { "SO_KEEPALIVE", tcp, "SOL_SOCKET" },
    { "SO_BROADCAST", udp, "SOL_SOCKET" },
    { "TCP_NODELAY", tcp, "IPPROTO_TCP" },
    { "IPV6_V6ONLY", tcp6, "IPPROTO_IPV6" },
    { "IP_MULTICAST_LOOP", udp, "IPPROTO_IP" },
  }
  for _, c in ipairs(cases) do
    local name, make, level = c[1], c[2], c[3]
    it(name .. " is set with true/false (or 1/0) and read back as a boolean", function()
      local s <close> = make()
      assert.is_true(s:setsockopt(S[level], S[name], true))
      assert.is_true(s:getsockopt(S[level], S[name]))
      assert.is_true(s:setsockopt(S[level], S[name], false))
      assert.is_false(s:getsockopt(S[level], S[name]))
      assert.is_true(s:setsockopt(S[level], S[name], 1))
      assert.is_true(s:getsockopt(S[level], S[name]))
      assert.is_true(s:setsockopt(S[level], S[name], 0))
      assert.is_false(s:getsockopt(S[level], S[name]))
    end)
  end

  it("SO_REUSEADDR on two sockets lets both bind one port (without it: EADDRINUSE)", function()
    local a <close> = tcp()
    assert(a:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
    assert(a:bind("127.0.0.1", 0))
    local port = a:getsockname().port
    local b <close> = tcp()
    assert(b:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
    assert.is_true(b:bind("127.0.0.1", port))
    local c <close> = tcp()
    assert.equal("EADDRINUSE", select(3, c:bind("127.0.0.1", port)))
  end)

  it("SO_REUSEPORT lets two listeners share a port", function()
    local a <close> = tcp()
    assert(a:setsockopt(S.SOL_SOCKET, S.SO_REUSEPORT, true))
    assert(a:bind("127.0.0.1", 0))
    assert(a:listen())
    local port = a:getsockname().port
    local b <close> = tcp()
    assert(b:setsockopt(S.SOL_SOCKET, S.SO_REUSEPORT, true))
    assert.is_true(b:bind("127.0.0.1", port))
    assert.is_true(b:listen())
    local c <close> = tcp()
    assert.equal("EADDRINUSE", select(3, c:bind("127.0.0.1", port)))
  end)

  it("SO_ACCEPTCONN (read only) says whether the socket listens", function()
    local s <close> = tcp()
    assert.is_false(s:getsockopt(S.SOL_SOCKET, S.SO_ACCEPTCONN))
    assert(s:bind("127.0.0.1", 0))
    assert(s:listen())
    assert.is_true(s:getsockopt(S.SOL_SOCKET, S.SO_ACCEPTCONN))
  end)
end)

describe("integer options", function()
  it("SO_RCVBUF and SO_SNDBUF read back at least what was set (Linux doubles it)", function()
    local s <close> = tcp()
    assert.is_true(s:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 65536))
    assert.is_true(s:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 32768))
    local r, w = s:getsockopt(S.SOL_SOCKET, S.SO_RCVBUF), s:getsockopt(S.SOL_SOCKET, S.SO_SNDBUF)
    assert.equal("integer", math.type(r))
    assert.is_true(r >= 65536, tostring(r))
    assert.is_true(w >= 32768, tostring(w))
  end)

  local exact = {
    { "TCP_KEEPIDLE", tcp, "IPPROTO_TCP", 30 },
    { "TCP_KEEPINTVL", tcp, "IPPROTO_TCP", 7 },
    { "TCP_KEEPCNT", tcp, "IPPROTO_TCP", 4 },
    { "IP_TTL", udp, "IPPROTO_IP", 17 },
    { "IP_MULTICAST_TTL", udp, "IPPROTO_IP", 3 },
  }
  for _, c in ipairs(exact) do
    local name, make, level, value = c[1], c[2], c[3], c[4]
    it(name .. " reads back the integer it was set to", function()
      local s <close> = make()
      assert.is_true(s:setsockopt(S[level], S[name], value))
      local got = s:getsockopt(S[level], S[name])
      assert.equal("integer", math.type(got))
      assert.equal(value, got)
    end)
  end

  it("SO_TYPE (read only) gives the socket type", function()
    local t <close> = tcp()
    local u <close> = udp()
    assert.equal(S.SOCK_STREAM, t:getsockopt(S.SOL_SOCKET, S.SO_TYPE))
    assert.equal(S.SOCK_DGRAM, u:getsockopt(S.SOL_SOCKET, S.SO_TYPE))
  end)

  it("SO_ERROR (read only) is 0 on a healthy socket and reports a pending error once", function()
    local t <close> = tcp()
    assert.equal(0, t:getsockopt(S.SOL_SOCKET, S.SO_ERROR))
    -- a connected UDP socket learns of ECONNREFUSED from an ICMP message
    local gone, port = net.udp()
    gone:close()
    local u <close> = udp()
    assert(u:connect("127.0.0.1", port))
    assert(u:send("x"))
    local err
    for _ = 1, 100 do                  -- bounded: the ICMP comes back at once
      err = u:getsockopt(S.SOL_SOCKET, S.SO_ERROR)
      if err ~= 0 then break end
      net.sleep(0.01)
    end
    assert.equal(S.errno.ECONNREFUSED, err)
    assert.equal(0, u:getsockopt(S.SOL_SOCKET, S.SO_ERROR))   -- reading clears it
  end)
end)

describe("seconds options", function()
  for _, name in ipairs({ "SO_RCVTIMEO", "SO_SNDTIMEO" }) do
    it(name .. " takes and gives seconds as a number, 0 for none", function()
      local s <close> = tcp()
      assert.equal(0, s:getsockopt(S.SOL_SOCKET, S[name]))
      assert.is_true(s:setsockopt(S.SOL_SOCKET, S[name], 1.5))
      assert.equal(1.5, s:getsockopt(S.SOL_SOCKET, S[name]))
      assert.is_true(s:setsockopt(S.SOL_SOCKET, S[name], 2))
      assert.equal(2, s:getsockopt(S.SOL_SOCKET, S[name]))
      assert.is_true(s:setsockopt(S.SOL_SOCKET, S[name], 0))
      assert.equal(0, s:getsockopt(S.SOL_SOCKET, S[name]))
    end)
  end
end)

describe("SO_LINGER", function()
  it("takes and gives a table { onoff = bool, linger = seconds }", function()
    local s <close> = tcp()
    assert.same({ onoff = false, linger = 0 }, s:getsockopt(S.SOL_SOCKET, S.SO_LINGER))
    assert.is_true(s:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = true, linger = 3 }))
    assert.same({ onoff = true, linger = 3 }, s:getsockopt(S.SOL_SOCKET, S.SO_LINGER))
    assert.is_true(s:setsockopt(S.SOL_SOCKET, S.SO_LINGER, { onoff = false, linger = 0 }))
    assert.is_false(s:getsockopt(S.SOL_SOCKET, S.SO_LINGER).onoff)
  end)

  it("raises for a value that is not a table", function()
    local s <close> = tcp()
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_LINGER, 5) end)
  end)
end)

describe("multicast options", function()
  local GROUP = "239.255.77.1"

  local function join(u, mreq)
    local ok, msg, code = u:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, mreq)
    if not ok and code == "ENODEV" then
      pending("no multicast-capable interface: " .. msg)
    end
    return ok, msg, code
  end

  it("IP_ADD_MEMBERSHIP and IP_DROP_MEMBERSHIP take { multiaddr, interface }", function()
    local u <close> = udp()
    assert(u:bind("0.0.0.0", 0))
    assert.is_true(join(u, { multiaddr = GROUP, interface = "127.0.0.1" }))
    assert.is_true(u:setsockopt(S.IPPROTO_IP, S.IP_DROP_MEMBERSHIP,
      { multiaddr = GROUP, interface = "127.0.0.1" }))
  end)

  it("IP_ADD_MEMBERSHIP with interface 0.0.0.0 lets the kernel choose", function()
    local u <close> = udp()
    assert(u:bind("0.0.0.0", 0))
    assert.is_true(join(u, { multiaddr = GROUP, interface = "0.0.0.0" }))
    -- joining the same group twice is the kernel's EADDRINUSE
    local ok, _, code = u:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP,
      { multiaddr = GROUP, interface = "0.0.0.0" })
    assert.is_nil(ok)
    assert.equal("EADDRINUSE", code)
    assert.is_true(u:setsockopt(S.IPPROTO_IP, S.IP_DROP_MEMBERSHIP,
      { multiaddr = GROUP, interface = "0.0.0.0" }))
  end)

  it("IP_DROP_MEMBERSHIP of a group not joined fails with nil, msg, code", function()
    local u <close> = udp()
    local ok, msg, code = u:setsockopt(S.IPPROTO_IP, S.IP_DROP_MEMBERSHIP,
      { multiaddr = GROUP, interface = "127.0.0.1" })
    assert.is_nil(ok)
    assert.equal("string", type(msg))
    assert.matches("^E", code)
  end)

  it("IP_ADD_MEMBERSHIP raises for a multiaddr that is not an IPv4 address", function()
    local u <close> = udp()
    assert.has_error(function()
      u:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "not-an-address" })
    end)
    assert.has_error(function() u:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, GROUP) end)
  end)

  it("IP_MULTICAST_IF takes and gives an IPv4 address as text", function()
    local u <close> = udp()
    assert.is_true(u:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_IF, "127.0.0.1"))
    assert.equal("127.0.0.1", u:getsockopt(S.IPPROTO_IP, S.IP_MULTICAST_IF))
  end)
end)

describe("options the table does not know", function()
  it("take and give raw bytes, as built by string.pack", function()
    local s <close> = tcp()
    -- TCP_SYNCNT is an int the module has no entry for
    assert.is_true(s:setsockopt(S.IPPROTO_TCP, S.TCP_SYNCNT, string.pack("i", 3)))
    local raw = s:getsockopt(S.IPPROTO_TCP, S.TCP_SYNCNT, 4)
    assert.equal("string", type(raw))
    assert.equal(4, #raw)
    assert.equal(3, string.unpack("i", raw))
    assert.equal(3, string.unpack("i", s:getsockopt(S.IPPROTO_TCP, S.TCP_SYNCNT)))
  end)

  it("a level or name the kernel rejects gives nil, msg, code", function()
    local s <close> = tcp()
    local ok, msg, code = s:setsockopt(S.SOL_SOCKET, 9999, string.pack("i", 1))
    assert.is_nil(ok)
    assert.matches("^setsockopt", msg)
    assert.equal("ENOPROTOOPT", code)
    local v, _, code2 = s:getsockopt(S.SOL_SOCKET, 9999)
    assert.is_nil(v)
    assert.equal("ENOPROTOOPT", code2)
  end)
end)

describe("option errors", function()
  it("an option that does not apply to the socket gives nil, msg, code", function()
    local u <close> = udp()
    local ok, msg, code = u:setsockopt(S.IPPROTO_TCP, S.TCP_NODELAY, true)
    assert.is_nil(ok)
    assert.equal("string", type(msg))
    assert.matches("^E", code)
  end)

  it("wrong argument types raise", function()
    local s <close> = tcp()
    assert.has_error(function() s:setsockopt("SOL_SOCKET", S.SO_REUSEADDR, true) end)
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, "SO_REUSEADDR", true) end)
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, "yes") end)
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, "big") end)
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, {}) end)
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_RCVTIMEO, "1s") end)
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR) end)
    assert.has_error(function() s:getsockopt(S.SOL_SOCKET) end)
    assert.has_error(function() s:getsockopt(nil, S.SO_TYPE) end)
    assert.has_error(function() s:setsockopt(S.IPPROTO_TCP, S.TCP_SYNCNT, {}) end)
  end)

  it("a negative timeout in SO_RCVTIMEO raises", function()
    local s <close> = tcp()
    assert.has_error(function() s:setsockopt(S.SOL_SOCKET, S.SO_RCVTIMEO, -1) end)
  end)
end)
