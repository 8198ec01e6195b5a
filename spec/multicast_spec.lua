-- luacheck: std +busted
-- Multicast on the loopback interface: join, send, receive, leave; TTL/hops
-- and loopback options. lo has no multicast route in most sandboxes, so the
-- sender names its interface (IP_MULTICAST_IF / IPV6_MULTICAST_IF).
local S = require "bsdsocket"
local net = require "helpers.net"

local GROUP4 = "239.255.77.77"
local GROUP6 = "ff02::1:77"

local function receiver(family, group)
  local r = assert(S.socket(family, S.SOCK_DGRAM))
  assert(r:setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, true))
  assert(r:bind(family == S.AF_INET and "0.0.0.0" or "::", 0))
  r:settimeout(2)
  return r, group
end

describe("IPv4 multicast on lo", function()
  it("joins a group, receives what is sent to it, and stops after leaving", function()
    local r <close> = receiver(S.AF_INET)
    local port = r:getsockname().port
    assert(r:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = GROUP4, interface = "127.0.0.1" }))
    local s <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_IF, "127.0.0.1"))
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_TTL, 1))
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_LOOP, true))
    assert.equal("127.0.0.1", s:getsockopt(S.IPPROTO_IP, S.IP_MULTICAST_IF))
    assert.equal(1, s:getsockopt(S.IPPROTO_IP, S.IP_MULTICAST_TTL))
    assert.is_true(s:getsockopt(S.IPPROTO_IP, S.IP_MULTICAST_LOOP))
    assert(s:sendto("hello group", GROUP4, port))
    local data, from = r:recvfrom(100)
    assert.equal("hello group", data)
    assert.equal("127.0.0.1", from.host)
    assert.equal(s:getsockname().port, from.port)
    assert(r:setsockopt(S.IPPROTO_IP, S.IP_DROP_MEMBERSHIP, { multiaddr = GROUP4, interface = "127.0.0.1" }))
    assert(s:sendto("nobody listens", GROUP4, port))
    r:settimeout(0.2)
    local none, _, code = r:recvfrom(100)
    assert.is_nil(none); assert.equal("ETIMEDOUT", code)
  end)

  it("names the interface by name or index too (struct ip_mreqn)", function()
    local why = net.lacks("ip_mreqn", "struct ip_mreqn is Linux's: IPv4 groups "
      .. "are joined by the interface's address there")
    if why then pending(why) return end
    local r <close> = receiver(S.AF_INET)
    local port = r:getsockname().port
    assert(r:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = GROUP4, interface = net.loopback() }))
    assert(r:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP,
                        { multiaddr = "239.255.77.78", interface = S.if_nametoindex(net.loopback()) }))
    local s <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_IF, "127.0.0.1"))
    assert(s:sendmmsg({ { "a", GROUP4, port }, { "b", "239.255.77.78", port } }))
    assert.equal("a", (r:recvfrom(10)))
    assert.equal("b", (r:recvfrom(10)))
    assert(r:setsockopt(S.IPPROTO_IP, S.IP_DROP_MEMBERSHIP, { multiaddr = GROUP4, interface = net.loopback() }))
  end)

  it("sets IP_MULTICAST_LOOP off (on lo the datagram comes back through the device anyway)", function()
    local s <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_LOOP, false))
    assert.is_false(s:getsockopt(S.IPPROTO_IP, S.IP_MULTICAST_LOOP))
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_MULTICAST_TTL, 4))
    assert.equal(4, s:getsockopt(S.IPPROTO_IP, S.IP_MULTICAST_TTL))
  end)

  it("reports a bad group as nil, msg, code and bad values as errors", function()
    local r <close> = receiver(S.AF_INET)
    local ok, msg, code = r:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "10.1.2.3" })
    assert.is_nil(ok); assert.equal("EINVAL", code); assert.matches("^setsockopt", msg)
    assert.has_error(function()
      r:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = "not an address" })
    end)
    assert.has_error(function()
      r:setsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP, { multiaddr = GROUP4, interface = "nosuchif0" })
    end)
    assert.has_error(function() r:getsockopt(S.IPPROTO_IP, S.IP_ADD_MEMBERSHIP) end)
  end)
end)

describe("IPv6 multicast on lo", function()
  it("joins and leaves a group by interface name or index; sets hops, loop and interface", function()
    local lo = S.if_nametoindex(net.loopback())
    local r <close> = receiver(S.AF_INET6)
    assert(r:setsockopt(S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, { multiaddr = GROUP6, interface = net.loopback() }))
    assert(r:setsockopt(S.IPPROTO_IPV6, S.IPV6_LEAVE_GROUP, { multiaddr = GROUP6, interface = lo }))
    local s <close> = S.socket(S.AF_INET6, S.SOCK_DGRAM)
    assert(s:setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_IF, lo))
    assert.equal(lo, s:getsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_IF))
    assert(s:setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_HOPS, 1))
    assert.equal(1, s:getsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_HOPS))
    assert(s:setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_LOOP, true))
    assert.is_true(s:getsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_LOOP))
    assert.has_error(function()
      r:setsockopt(S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, { multiaddr = "239.1.1.1" })
    end)
  end)

  it("sends to a group on lo and receives it", function()
    local lo = S.if_nametoindex(net.loopback())
    local r <close> = receiver(S.AF_INET6)
    local port = r:getsockname().port
    assert(r:setsockopt(S.IPPROTO_IPV6, S.IPV6_JOIN_GROUP, { multiaddr = GROUP6, interface = lo }))
    local s <close> = S.socket(S.AF_INET6, S.SOCK_DGRAM)
    assert(s:setsockopt(S.IPPROTO_IPV6, S.IPV6_MULTICAST_IF, lo))
    local ok, msg, code = s:sendto("hello v6 group", S.addr(GROUP6 .. "%lo", port))
    if not ok and code == "ENETUNREACH" then
      -- lo lacks IFF_MULTICAST here, so the kernel has no ff00::/8 route on it
      -- (`ip -6 route show table local` has none for lo) and refuses to send.
      pending("kernel refuses IPv6 multicast on lo (" .. msg .. "): lo has no multicast route")
      return
    end
    assert(ok, msg)
    local data, from = r:recvfrom(100)
    assert.equal("hello v6 group", data)
    assert.equal(s:getsockname().port, from.port)
  end)
end)

describe("examples/multicast_chat.lua", function()
  it("sends stdin lines to the group and its listener prints them (IPv4 on lo)", function()
    local build = os.getenv("BSDSOCKET_BUILD") or "build"
    local probe <close> = receiver(S.AF_INET)   -- a free port for the group
    local port = probe:getsockname().port
    probe:close()
    local cmd = ("printf 'hello\\nworld\\n' | LUA_PATH='lua/?.lua;;' LUA_CPATH='%s/?.so;;' "
      .. net.luacmd(20) .. " examples/multicast_chat.lua 239.255.77.79 %d alice 127.0.0.1 2>/dev/null")
      :format(build, port)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("a")
    local ok, how, code = p:close()
    assert.same({ true, "exit", 0 }, { ok, how, code })
    assert.matches("%[127%.0%.0%.1:%d+%] alice: hello\n%[127%.0%.0%.1:%d+%] alice: world\n", out)
    assert.matches("alice left", out)
  end)
end)
