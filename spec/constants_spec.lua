-- Constants: the C names as integer fields of the module.
local net = require "helpers.net"
local S = net.S

local linux = io.open("/proc/sys/kernel/ostype") ~= nil

-- what DESIGN.md and API.md list; every platform with BSD sockets has these
local portable = {
  "AF_INET", "AF_INET6", "AF_UNIX", "AF_UNSPEC",
  "SOCK_STREAM", "SOCK_DGRAM", "SOCK_RAW", "SOCK_SEQPACKET",
  "IPPROTO_IP", "IPPROTO_IPV6", "IPPROTO_TCP", "IPPROTO_UDP", "IPPROTO_ICMP",
  "IPPROTO_ICMPV6", "IPPROTO_RAW",
  "SOL_SOCKET",
  "SO_REUSEADDR", "SO_KEEPALIVE", "SO_BROADCAST", "SO_DONTROUTE", "SO_OOBINLINE",
  "SO_ACCEPTCONN", "SO_RCVBUF", "SO_SNDBUF", "SO_RCVLOWAT", "SO_SNDLOWAT", "SO_ERROR",
  "SO_TYPE", "SO_RCVTIMEO", "SO_SNDTIMEO", "SO_LINGER",
  "TCP_NODELAY", "TCP_MAXSEG",
  "IP_TTL", "IP_TOS", "IP_MULTICAST_TTL", "IP_MULTICAST_LOOP", "IP_MULTICAST_IF",
  "IP_ADD_MEMBERSHIP", "IP_DROP_MEMBERSHIP",
  "IPV6_V6ONLY", "IPV6_UNICAST_HOPS", "IPV6_MULTICAST_HOPS", "IPV6_MULTICAST_IF",
  "IPV6_MULTICAST_LOOP", "IPV6_JOIN_GROUP", "IPV6_LEAVE_GROUP",
  "MSG_OOB", "MSG_PEEK", "MSG_DONTROUTE", "MSG_WAITALL", "MSG_TRUNC", "MSG_CTRUNC", "MSG_EOR",
  "MSG_DONTWAIT",
  "AI_PASSIVE", "AI_CANONNAME", "AI_NUMERICHOST", "AI_NUMERICSERV", "AI_V4MAPPED",
  "AI_ALL", "AI_ADDRCONFIG",
  "NI_NUMERICHOST", "NI_NUMERICSERV", "NI_NAMEREQD", "NI_DGRAM", "NI_NOFQDN",
  "SHUT_RD", "SHUT_WR", "SHUT_RDWR",
  "SOMAXCONN", "INADDR_ANY", "INADDR_LOOPBACK",
}

-- what Linux adds
local linux_only = {
  "SOCK_NONBLOCK", "SOCK_CLOEXEC", "SO_REUSEPORT", "SO_DOMAIN", "SO_PROTOCOL",
  "SO_PRIORITY", "SO_MARK", "SO_PASSCRED",
  "TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT", "TCP_CORK", "TCP_QUICKACK",
  "TCP_USER_TIMEOUT", "IP_RECVTTL", "IP_PKTINFO", "IPV6_RECVPKTINFO",
  "MSG_NOSIGNAL", "MSG_CMSG_CLOEXEC", "MSG_WAITFORONE",
}

describe("constants", function()
  for _, name in ipairs(portable) do
    it(name .. " is an integer", function()
      assert.equal("integer", math.type(S[name]), name)
    end)
  end

  for _, name in ipairs(linux_only) do
    it(name .. " is an integer on Linux", function()
      if not linux then pending("not Linux") end
      assert.equal("integer", math.type(S[name]), name)
    end)
  end

  it("every upper-case field of the module is an integer", function()
    local n = 0
    for k, v in pairs(S) do
      if type(k) == "string" and k:match("^[A-Z][A-Z0-9_]*$") then
        assert.equal("integer", math.type(v), k)
        n = n + 1
      end
    end
    assert.is_true(n >= #portable)
  end)

  it("have the values the C headers give on Linux", function()
    if not linux then pending("Linux values only") end
    assert.equal(2, S.AF_INET)
    assert.equal(10, S.AF_INET6)
    assert.equal(1, S.AF_UNIX)
    assert.equal(0, S.AF_UNSPEC)
    assert.equal(1, S.SOCK_STREAM)
    assert.equal(2, S.SOCK_DGRAM)
    assert.equal(3, S.SOCK_RAW)
    assert.equal(1, S.SOL_SOCKET)
    assert.equal(6, S.IPPROTO_TCP)
    assert.equal(17, S.IPPROTO_UDP)
    assert.equal(0, S.SHUT_RD)
    assert.equal(1, S.SHUT_WR)
    assert.equal(2, S.SHUT_RDWR)
    assert.equal(0x4000, S.MSG_NOSIGNAL)
    assert.equal(2, S.SO_REUSEADDR)
  end)

  it("INADDR_ANY and INADDR_LOOPBACK are in host byte order", function()
    assert.equal(0, S.INADDR_ANY)
    assert.equal(0x7F000001, S.INADDR_LOOPBACK)
  end)

  it("SOMAXCONN is positive", function()
    assert.is_true(S.SOMAXCONN > 0)
  end)

  it("different names of one family are distinct where they must be", function()
    assert.are_not.equal(S.AF_INET, S.AF_INET6)
    assert.are_not.equal(S.SOCK_STREAM, S.SOCK_DGRAM)
    assert.are_not.equal(S.SHUT_RD, S.SHUT_WR)
    assert.are_not.equal(S.AI_PASSIVE, S.AI_CANONNAME)
  end)
end)
