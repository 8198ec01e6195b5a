-- The resolver and conversions: getaddrinfo with every hint, getnameinfo,
-- inet_pton/inet_ntop, and the byte-order functions.
local net = require "helpers.net"
local S = net.S

local function all(list, pred)
  for _, e in ipairs(list) do
    if not pred(e) then return false end
  end
  return true
end

describe("S.getaddrinfo", function()
  it("returns an array of { family, socktype, protocol, addr } for a numeric host", function()
    local list = assert(S.getaddrinfo("127.0.0.1", 80))
    assert.is_true(#list >= 1)
    for _, e in ipairs(list) do
      assert.equal(S.AF_INET, e.family)
      assert.equal("integer", math.type(e.socktype))
      assert.equal("integer", math.type(e.protocol))
      assert.equal(S.addr("127.0.0.1", 80), e.addr)
    end
  end)

  it("takes the service as a number, a numeric string, a name or nil", function()
    local a = assert(S.getaddrinfo("127.0.0.1", "8080"))
    assert.equal(8080, a[1].addr.port)
    local b = assert(S.getaddrinfo("127.0.0.1", "http", { socktype = S.SOCK_STREAM }))
    assert.equal(80, b[1].addr.port)
    local c = assert(S.getaddrinfo("127.0.0.1", nil))
    assert.equal(0, c[1].addr.port)
  end)

  it("hints.family picks the address family", function()
    local v6 = assert(S.getaddrinfo("::1", 80, { family = S.AF_INET6 }))
    assert.is_true(all(v6, function(e) return e.family == S.AF_INET6 end))
    assert.equal("[::1]:80", tostring(v6[1].addr))
    local v4 = assert(S.getaddrinfo("localhost", 80, { family = S.AF_INET }))
    assert.is_true(all(v4, function(e) return e.family == S.AF_INET end))
    -- an IPv6 literal asked for as IPv4 does not resolve
    local none, _, code = S.getaddrinfo("::1", 80, { family = S.AF_INET })
    assert.is_nil(none)
    assert.matches("^EAI_", code)
  end)

  it("hints.socktype and hints.protocol narrow the results", function()
    local st = assert(S.getaddrinfo("127.0.0.1", 80, { socktype = S.SOCK_STREAM }))
    assert.is_true(all(st, function(e) return e.socktype == S.SOCK_STREAM end))
    assert.is_true(all(st, function(e) return e.protocol == S.IPPROTO_TCP end))
    local dg = assert(S.getaddrinfo("127.0.0.1", 53, { protocol = S.IPPROTO_UDP }))
    assert.is_true(all(dg, function(e) return e.socktype == S.SOCK_DGRAM end))
    assert.is_true(all(dg, function(e) return e.protocol == S.IPPROTO_UDP end))
  end)

  it("AI_PASSIVE with no host gives the wildcard, without it the loopback", function()
    local p = assert(S.getaddrinfo(nil, 8080, { family = S.AF_INET, flags = S.AI_PASSIVE }))
    assert.equal("0.0.0.0", p[1].addr.host)
    assert.equal(8080, p[1].addr.port)
    local l = assert(S.getaddrinfo(nil, 8080, { family = S.AF_INET }))
    assert.equal("127.0.0.1", l[1].addr.host)
    local p6 = assert(S.getaddrinfo(nil, 8080, { family = S.AF_INET6, flags = S.AI_PASSIVE }))
    assert.equal("::", p6[1].addr.host)
  end)

  it("AI_NUMERICHOST accepts an address and refuses a name with EAI_NONAME", function()
    assert(S.getaddrinfo("127.0.0.1", 80, { flags = S.AI_NUMERICHOST }))
    local none, msg, code = S.getaddrinfo("localhost", 80, { flags = S.AI_NUMERICHOST })
    assert.is_nil(none)
    assert.equal("string", type(msg))
    assert.equal("EAI_NONAME", code)
  end)

  it("AI_CANONNAME puts a canonname on the first entry only", function()
    local list = assert(S.getaddrinfo("localhost", 80,
      { family = S.AF_INET, flags = S.AI_CANONNAME }))
    assert.equal("string", type(list[1].canonname))
    for i = 2, #list do assert.is_nil(list[i].canonname) end
    local plain = assert(S.getaddrinfo("localhost", 80, { family = S.AF_INET }))
    assert.is_nil(plain[1].canonname)
  end)

  it("AI_NUMERICSERV accepts a port number and refuses a service name", function()
    local ok = assert(S.getaddrinfo("127.0.0.1", "80", { flags = S.AI_NUMERICSERV }))
    assert.equal(80, ok[1].addr.port)
    local none, _, code = S.getaddrinfo("127.0.0.1", "http",
      { flags = S.AI_NUMERICSERV, socktype = S.SOCK_STREAM })
    assert.is_nil(none)
    assert.matches("^EAI_", code)
  end)

  it("gives nil, msg, 'EAI_...' for a name that does not exist", function()
    local none, msg, code = S.getaddrinfo("nosuch.invalid", 80)
    assert.is_nil(none)
    assert.equal("string", type(msg))
    assert.matches("nosuch%.invalid", msg)
    assert.matches("^EAI_", code)
  end)

  it("gives EAI_SERVICE (or another EAI_ code) for an unknown service name", function()
    local none, _, code = S.getaddrinfo("127.0.0.1", "no-such-service-xyz",
      { socktype = S.SOCK_STREAM })
    assert.is_nil(none)
    assert.matches("^EAI_", code)
  end)

  it("raises for a numeric service outside 0..65535 instead of wrapping it", function()
    assert.has_error(function() S.getaddrinfo("127.0.0.1", 70000) end)
    assert.has_error(function() S.getaddrinfo("127.0.0.1", 65536) end)
    assert.has_error(function() S.getaddrinfo("127.0.0.1", -1) end)
    assert.equal(65535, assert(S.getaddrinfo("127.0.0.1", 65535))[1].addr.port)
  end)

  it("raises for hints of the wrong type", function()
    assert.has_error(function() S.getaddrinfo("127.0.0.1", 80, "stream") end)
    assert.has_error(function() S.getaddrinfo("127.0.0.1", 80, { family = "inet" }) end)
    assert.has_error(function() S.getaddrinfo("127.0.0.1", 80, { flags = {} }) end)
  end)

  it("results can be used to connect", function()
    local srv <close>, port = net.server()
    local e = assert(S.getaddrinfo("localhost", port,
      { family = S.AF_INET, socktype = S.SOCK_STREAM }))[1]
    local c <close> = assert(S.socket(e.family, e.socktype, e.protocol))
    assert.is_true(c:connect(e.addr))
    local conn <close> = assert(srv:accept())
    assert.equal(c:getsockname(), conn:getpeername())
  end)
end)

describe("S.getnameinfo", function()
  it("with NI_NUMERICHOST | NI_NUMERICSERV gives numeric host and service", function()
    local flags = S.NI_NUMERICHOST | S.NI_NUMERICSERV
    local h, s = S.getnameinfo(S.addr("127.0.0.1", 80), flags)
    assert.equal("127.0.0.1", h)
    assert.equal("80", s)
    h, s = S.getnameinfo(S.addr("::1", 443), flags)
    assert.equal("::1", h)
    assert.equal("443", s)
  end)

  it("without flags gives a host name and a service as strings", function()
    local h, s = S.getnameinfo(S.addr("127.0.0.1", 80))
    assert.equal("string", type(h))
    assert.equal("string", type(s))
    assert.is_true(s == "http" or s == "80", s)
  end)

  it("with NI_NAMEREQD on an address without a name gives nil, msg, 'EAI_...'", function()
    local h, _, code = S.getnameinfo(S.addr("192.0.2.123", 80), S.NI_NAMEREQD)
    if h then pending("this resolver names 192.0.2.123: " .. h) end
    assert.matches("^EAI_", code)
  end)

  it("raises for something that is not an addr", function()
    assert.has_error(function() S.getnameinfo("127.0.0.1") end)
  end)
end)

describe("S.inet_pton and S.inet_ntop", function()
  it("convert IPv4 text to 4 bytes and back", function()
    assert.equal("\127\0\0\1", S.inet_pton(S.AF_INET, "127.0.0.1"))
    assert.equal("\1\2\3\4", S.inet_pton(S.AF_INET, "1.2.3.4"))
    assert.equal("10.0.255.1", S.inet_ntop(S.AF_INET, "\10\0\255\1"))
  end)

  it("convert IPv6 text to 16 bytes and back, in canonical form", function()
    assert.equal(string.rep("\0", 15) .. "\1", S.inet_pton(S.AF_INET6, "::1"))
    local b = S.inet_pton(S.AF_INET6, "2001:db8::ff00:42:8329")
    assert.equal(16, #b)
    assert.equal("2001:db8::ff00:42:8329", S.inet_ntop(S.AF_INET6, b))
    assert.equal("::1", S.inet_ntop(S.AF_INET6, S.inet_pton(S.AF_INET6, "0:0:0:0:0:0:0:1")))
  end)

  it("inet_pton gives nil, msg, 'EINVAL' for text that is not an address of the family", function()
    for _, case in ipairs({
      { S.AF_INET, "256.1.1.1" }, { S.AF_INET, "1.2.3" }, { S.AF_INET, "::1" },
      { S.AF_INET, "localhost" }, { S.AF_INET6, "1.2.3.4" }, { S.AF_INET6, "1:::2" },
      { S.AF_INET6, "" },
    }) do
      local r, msg, code = S.inet_pton(case[1], case[2])
      assert.is_nil(r, case[2])
      assert.equal("string", type(msg))
      assert.equal("EINVAL", code)
    end
  end)

  it("inet_ntop raises unless the bytes have the family's length", function()
    assert.has_error(function() S.inet_ntop(S.AF_INET, "\1\2\3") end)
    assert.has_error(function() S.inet_ntop(S.AF_INET, string.rep("\0", 16)) end)
    assert.has_error(function() S.inet_ntop(S.AF_INET6, "\1\2\3\4") end)
  end)
end)

describe("byte order", function()
  it("htons/ntohs swap the two bytes on a little-endian machine, not on a big-endian one", function()
    if net.little_endian then
      assert.equal(0x3412, S.htons(0x1234))
      assert.equal(0x3412, S.ntohs(0x1234))
      assert.equal(0x78563412, S.htonl(0x12345678))
      assert.equal(0x78563412, S.ntohl(0x12345678))
    else
      assert.equal(0x1234, S.htons(0x1234))
      assert.equal(0x12345678, S.htonl(0x12345678))
    end
  end)

  it("agree with string.pack's big-endian (network) order", function()
    for _, v in ipairs({ 0, 1, 80, 0x1234, 0xFFFF }) do
      assert.equal(string.unpack("=I2", string.pack(">I2", v)), S.htons(v))
      assert.equal(v, S.ntohs(S.htons(v)))
    end
    for _, v in ipairs({ 0, 1, 0x7F000001, 0xDEADBEEF, 0xFFFFFFFF }) do
      assert.equal(string.unpack("=I4", string.pack(">I4", v)), S.htonl(v))
      assert.equal(v, S.ntohl(S.htonl(v)))
    end
  end)

  it("raise for values outside the range or not integers", function()
    assert.has_error(function() S.htons(70000) end)
    assert.has_error(function() S.htons(0x10000) end)
    assert.has_error(function() S.htons(-1) end)
    assert.has_error(function() S.htons(1.5) end)
    assert.has_error(function() S.ntohs(-1) end)
    assert.has_error(function() S.htonl(0x100000000) end)
    assert.has_error(function() S.htonl(-1) end)
    assert.has_error(function() S.ntohl(2.5) end)
    assert.has_error(function() S.htons("x") end)
  end)
end)
