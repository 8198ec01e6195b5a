-- The resolver and conversions: getaddrinfo with every hint, getnameinfo,
-- inet_pton/inet_ntop, and the byte-order functions.
local net = require "helpers.net"
local cshim = require "helpers.cshim"
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

  it("in a task too, a canonname only if AI_CANONNAME asks (musl gives one)",
     function()
    local loop = require "bsdsocket.loop"
    local plain, canon
    loop.spawn(function()
      plain = assert(S.getaddrinfo("localhost", 80, { family = S.AF_INET }))
      canon = assert(S.getaddrinfo("localhost", 80,
        { family = S.AF_INET, flags = S.AI_CANONNAME }))
    end)
    assert.is_true(loop.run(10))
    assert.is_nil(plain[1].canonname)
    assert.equal("string", type(canon[1].canonname))
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

-- ---- the resolver inside bsdsocket.loop tasks ----

local loop = require "bsdsocket.loop"
local childproc = require "helpers.child"

-- Runs fn as the only task of a loop (bounded to 10 s) and returns what it
-- returned, packed.
local function intask(fn)
  local out
  loop.spawn(function() out = table.pack(fn()) end)
  assert.is_true(loop.run(10), "the task did not finish")
  return out
end

-- A shared object that makes getaddrinfo slow on purpose for names ending
-- in ".slow.test": the calling thread sleeps SLOW_GAI_MS (default 1000) ms,
-- then "nosuch*.slow.test" gives EAI_NONAME and any other such name resolves
-- as 127.0.0.1. Other names go to the real getaddrinfo. Built once with the
-- C compiler; nil if there is none.
local slowgai = cshim.new("slowgai", [[
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
static int endswith(const char *s, const char *tail) {
  size_t n = strlen(s), m = strlen(tail);
  return n >= m && strcmp(s + n - m, tail) == 0;
}
int getaddrinfo(const char *host, const char *serv, const struct addrinfo *hints,
                struct addrinfo **res) {
  gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (host && endswith(host, ".slow.test") && !(hints && (hints->ai_flags & AI_NUMERICHOST))) {
    const char *ms = getenv("SLOW_GAI_MS");
    long t = ms ? atol(ms) : 1000;
    struct timespec ts = { t / 1000, (t % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {}
    if (strncmp(host, "nosuch", 6) == 0) return EAI_NONAME;
    host = "127.0.0.1";
  }
  return real(host, serv, hints, res);
}
]], "-ldl")
teardown(function() slowgai:remove() end)   -- after every test of this file

-- Runs code in a child lua5.4 with the slow getaddrinfo preloaded; returns
-- its output and exit status. (busted keeps one finally per test: this one
-- also runs `also`.)
local function withslowgai(code, seconds, also, shell)
  local so = slowgai:path()
  if not so then return nil end
  local preload = os.getenv("LD_PRELOAD")
  local env = (shell or "") .. " LD_PRELOAD=" .. net.shquote((preload and preload .. ":" or "") .. so)
  local h = childproc.spawn(env, code, seconds or 60)
  finally(function()
    h.cleanup()
    if also then also() end
  end)
  local status = h:wait(seconds or 60)
  return h.output(), status
end

describe("the resolver in loop tasks", function()
  it("S.getaddrinfo in a task gives what it gives outside", function()
    local hints = { family = S.AF_INET, socktype = S.SOCK_STREAM }
    local outside = assert(S.getaddrinfo("localhost", 80, hints))
    local r = intask(function() return S.getaddrinfo("localhost", 80, hints) end)
    local inside = assert(r[1])
    assert.equal(#outside, #inside)
    for i, e in ipairs(outside) do
      assert.equal(e.family, inside[i].family)
      assert.equal(e.socktype, inside[i].socktype)
      assert.equal(e.protocol, inside[i].protocol)
      assert.equal(e.addr, inside[i].addr)
    end
    -- numeric hosts, nil hosts and service names too
    r = intask(function()
      return S.getaddrinfo("127.0.0.1", "http", { socktype = S.SOCK_STREAM }),
        S.getaddrinfo(nil, 8080, { family = S.AF_INET, flags = S.AI_PASSIVE }),
        S.getaddrinfo("::1", 80, { family = S.AF_INET6 })
    end)
    assert.equal(S.addr("127.0.0.1", 80), r[1][1].addr)
    assert.equal(S.addr("0.0.0.0", 8080), r[2][1].addr)
    assert.equal(S.addr("::1", 80), r[3][1].addr)
    -- AI_CANONNAME goes through the worker too, for names and numbers alike
    local flags = { family = S.AF_INET, flags = S.AI_CANONNAME }
    r = intask(function()
      return S.getaddrinfo("localhost", 80, flags), S.getaddrinfo("127.0.0.1", 80, flags)
    end)
    assert.equal(assert(S.getaddrinfo("localhost", 80, flags))[1].canonname, r[1][1].canonname)
    assert.equal(assert(S.getaddrinfo("127.0.0.1", 80, flags))[1].canonname, r[2][1].canonname)
  end)

  it("S.addr, connect, bind, sendto, sendmsg and sendmmsg take a host name in a task", function()
    local srv <close>, port = net.server()
    local u <close>, uport = net.udp()
    local r = intask(function()
      local a = S.addr("localhost", 81)
      local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      local ok, msg = c:connect("localhost", port)
      local b <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
      local bound = b:bind("localhost", 0)
      local sent = b:sendto("one", "localhost", uport)
      local sent2 = b:sendto("two", "localhost", uport, 0)
      local sent3 = b:sendmsg("three", "localhost", uport)
      local sent4 = b.sendmmsg and b:sendmmsg({ "four", { "five", "localhost", uport } }, "localhost", uport)
      local conn <close> = assert(srv:accept())
      return a, ok, msg, bound, sent, sent2, sent3, tostring(b:getsockname().host),
        conn:getpeername() == c:getsockname(), sent4
    end)
    assert.equal(S.addr("127.0.0.1", 81), r[1])
    assert.is_true(r[2], r[3])
    assert.is_true(r[4])
    assert.same({ 3, 3, 5 }, { r[5], r[6], r[7] })
    assert.equal("127.0.0.1", r[8])
    assert.is_true(r[9])
    assert.equal("one", (u:recvfrom(10)))
    assert.equal("two", (u:recvfrom(10)))
    assert.equal("three", (u:recvfrom(10)))
    if r[10] then   -- sendmmsg (Linux)
      assert.equal(2, r[10])
      assert.equal("four", (u:recvfrom(10)))
      assert.equal("five", (u:recvfrom(10)))
    end
  end)

  it("S.tcp_connect to a host name connects from a task", function()
    local srv <close>, port = net.server()
    local r = intask(function()
      local c = S.tcp_connect("localhost", port, 5)
      local conn <close> = assert(srv:accept())
      local same = c and conn:getpeername() == c:getsockname()
      if c then c:close() end
      return same
    end)
    assert.is_true(r[1])
  end)

  it("a name that does not resolve gives nil, msg, 'EAI_...' naming the call and the host", function()
    local r = intask(function()
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
      return table.pack(S.getaddrinfo("nosuch.invalid", 80)),
        table.pack(S.addr("nosuch.invalid", 80)),
        table.pack(s:connect("nosuch.invalid", 9)),
        table.pack(s:sendto("x", "nosuch.invalid", 9)),
        table.pack(S.tcp_connect("nosuch.invalid", 9))
    end)
    for i, call in ipairs({ "getaddrinfo", "addr", "connect", "sendto", "getaddrinfo" }) do
      local v = r[i]
      assert.equal(3, v.n, call)
      assert.is_nil(v[1], call)
      assert.matches("^" .. call .. " nosuch%.invalid:%d+: ", v[2])
      assert.matches("^EAI_", v[3], call)
    end
  end)

  it("outside tasks (also in a coroutine that is not a task) the resolver does not yield", function()
    local co = coroutine.create(function()
      return S.getaddrinfo("localhost", 80, { family = S.AF_INET }), S.addr("localhost", 80)
    end)
    local ok, list, a = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("dead", coroutine.status(co))
    assert.equal("table", type(list))
    assert.equal(S.addr("127.0.0.1", 80), a)
  end)

  it("a task waits on a request object of its own: 'bsdsocket.wait', request, 1 (read), no deadline", function()
    local co = coroutine.create(function() return S.getaddrinfo("localhost", 80, { family = S.AF_INET }) end)
    S._tasks[co] = true
    local ok, what, wake, ev, deadline = coroutine.resume(co)
    assert.is_true(ok, what)
    assert.equal("bsdsocket.wait", what)
    assert.equal("bsdsocket.resolve (pending)", tostring(wake))
    assert.equal("integer", math.type(wake:pollfd()))
    assert.equal(1, ev)
    assert.is_nil(deadline)
    assert.is_true(loop.wait(wake, "r", 5))
    local done, list = coroutine.resume(co, true)
    assert.is_true(done)
    assert.equal(S.addr("127.0.0.1", 80), list[1].addr)
    assert.equal("bsdsocket.resolve (released)", tostring(wake))   -- released once answered
  end)

  it("a wait cut short gives nil, msg, code: the scheduler's own or ETIMEDOUT", function()
    local function start(fn)
      local co = coroutine.create(fn)
      S._tasks[co] = true
      local _, what, wake = coroutine.resume(co)
      assert.equal("bsdsocket.wait", what)
      return co, wake
    end
    local co, wake = start(function() return S.getaddrinfo("localhost", 80) end)
    local ok, r1, msg, code = coroutine.resume(co, false)
    assert.is_true(ok)
    assert.is_nil(r1)
    assert.matches("^getaddrinfo localhost", msg)
    assert.equal("ETIMEDOUT", code)
    assert.equal("bsdsocket.resolve (released)", tostring(wake))
    co = start(function() return S.addr("localhost", 80) end)
    ok, r1, msg, code = coroutine.resume(co, nil, "cancelled", "ECANCELED")
    assert.is_true(ok)
    assert.same({ nil, "cancelled", "ECANCELED" }, { r1, msg, code })
  end)

  it("loop.cancel ends a task's lookup with nil, msg, ECANCELED", function()
    local got = {}
    local t1 = loop.spawn(function() got.gai = table.pack(S.getaddrinfo("localhost", 80)) end)
    local t2 = loop.spawn(function() got.addr = table.pack(S.addr("localhost", 80)) end)
    loop.spawn(function()  -- runs after both started their lookups
      loop.cancel(t1, "no time")
      loop.cancel(t2, "no time")
    end)
    assert.is_true(loop.run(10))
    assert.same({ n = 3, nil, "getaddrinfo: no time", "ECANCELED" }, got.gai)
    assert.same({ n = 3, nil, "addr: no time", "ECANCELED" }, got.addr)
  end)

  it("a socket closed by another task while its connect resolves gives nil, msg, 'EBADF'", function()
    -- both tasks run in the same pass of the loop, before it looks for the
    -- answer: the socket is closed while the lookup is out
    local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local r
    loop.spawn(function() r = table.pack(s:connect("localhost", 9)) end)
    loop.spawn(function() s:close() end)
    assert.is_true(loop.run(10), "the task did not finish")
    assert.is_nil(r[1])
    assert.matches("^connect localhost:9: ", r[2])
    assert.equal("EBADF", r[3])
  end)

  it("leaks no descriptor, even when a task resolving is dropped before the answer", function()
    -- workers of lookups dropped by the specs above close their ends on
    -- their own time (slowly under valgrind): count once that is over
    local before = net.fdcount()
    for _ = 1, 50 do
      net.sleep(0.1)
      local again = net.fdcount()
      if again == before then break end
      before = again
    end
    for _ = 1, 20 do
      intask(function() return S.getaddrinfo("localhost", 80), S.addr("localhost", 80) end)
    end
    for _ = 1, 20 do   -- abandoned: the worker frees the answer and closes its end
      local co = coroutine.create(function() return S.getaddrinfo("localhost", 80) end)
      S._tasks[co] = true
      assert.equal("bsdsocket.wait", select(2, coroutine.resume(co)))
    end
    collectgarbage()
    collectgarbage()
    local after
    for _ = 1, 50 do   -- the workers finish on their own time (bounded)
      after = net.fdcount()
      if after == before then break end
      net.sleep(0.1)
    end
    assert.equal(before, after)
  end)
end)

describe("with a getaddrinfo that answers in 1 s (LD_PRELOAD fixture)", function()
  it("100 tasks resolving at once take about 1 s, not 100, and a ticking task keeps ticking", function()
    local out, status = withslowgai([[
      local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      -- the serial time per lookup, outside tasks (two of them)
      local t0 = S.monotime()
      for i = 1, 2 do assert(S.getaddrinfo("serial" .. i .. ".slow.test", 80)) end
      local serial = (S.monotime() - t0) / 2
      local n, ok, ticks, maxgap = 100, 0, 0, 0
      local resolving = true
      loop.spawn(function()
        local last = S.monotime()
        while resolving do
          loop.sleep(0.05)
          local now = S.monotime()
          if now - last > maxgap then maxgap = now - last end
          last = now
          ticks = ticks + 1
        end
      end)
      local done = 0
      t0 = S.monotime()
      for i = 1, n do
        loop.spawn(function()
          local list = S.getaddrinfo("h" .. i .. ".slow.test", 80, { family = S.AF_INET })
          if list and list[1].addr == S.addr("127.0.0.1", 80) then ok = ok + 1 end
          done = done + 1
          if done == n then resolving = false end
        end)
      end
      assert(loop.run(30))
      local elapsed = S.monotime() - t0
      print(("serial %.3f parallel %.3f ok %d ticks %d maxgap %.3f"):format(
        serial, elapsed, ok, ticks, maxgap))
    ]], 60)
    if not out then pending("no C compiler for the slow getaddrinfo fixture") end
    assert.equal(0, status, out)
    local serial, elapsed, ok, ticks, maxgap =
      out:match("serial (%S+) parallel (%S+) ok (%d+) ticks (%d+) maxgap (%S+)")
    assert.truthy(serial, out)
    serial, elapsed, ok, ticks, maxgap = tonumber(serial), tonumber(elapsed),
      tonumber(ok), tonumber(ticks), tonumber(maxgap)
    print(("resolver: 100 slow lookups in tasks: %.2f s (serial: %.2f s each, so %.0f s in a row); "
      .. "ticker: %d ticks, longest gap %.3f s"):format(elapsed, serial, 100 * serial, ticks, maxgap))
    assert.is_true(serial >= 0.9, out)                  -- the fixture is slow
    assert.equal(100, ok, out)
    assert.is_true(elapsed < 10 * serial, out)          -- at least 10 times faster than in a row
    assert.is_true(elapsed < 100 * serial / 10, out)
    assert.is_true(ticks >= 5, out)                     -- ~20 expected
    assert.is_true(maxgap < 0.9, out)                   -- never frozen for a (1 s) lookup
  end)

  it("tcp_connect, S.addr and connect resolve in parallel; EAI_NONAME comes back to each task", function()
    local srv, port = net.server()   -- the listener the tasks connect to
    local out, status = withslowgai(([[
      local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      local port, results = %d, {}
      local t0 = S.monotime()
      local function task(name, fn) loop.spawn(function() results[name] = table.pack(fn()) end) end
      task("tcp_connect", function()
        local c = S.tcp_connect("svc.slow.test", port)
        return c and c:getpeername().port
      end)
      task("addr", function() return S.addr("a.slow.test", 7) end)
      task("connect", function()
        local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        return s:connect("c.slow.test", port)
      end)
      task("gai_none", function() return S.getaddrinfo("nosuch1.slow.test", 80) end)
      task("addr_none", function() return S.addr("nosuch2.slow.test", 80) end)
      task("tcp_none", function() return S.tcp_connect("nosuch3.slow.test", port) end)
      task("sendto_none", function()
        local u = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
        return u:sendto("x", "nosuch4.slow.test", 9)
      end)
      assert(loop.run(30))
      print(("elapsed %%.3f"):format(S.monotime() - t0))
      for _, k in ipairs({ "tcp_connect", "addr", "connect", "gai_none", "addr_none", "tcp_none",
                           "sendto_none" }) do
        local r = results[k]
        print(k, r.n, tostring(r[1]), tostring(r[2]), tostring(r[3]))
      end
    ]]):format(port), 60, function() srv:close() end)
    if not out then srv:close() pending("no C compiler for the slow getaddrinfo fixture") end
    assert.equal(0, status, out)
    local elapsed = tonumber(out:match("elapsed (%S+)"))
    assert.truthy(elapsed, out)
    assert.is_true(elapsed >= 0.9 and elapsed < 5, out)  -- 7 lookups of 1 s, side by side
    assert.matches("\ntcp_connect\t1\t" .. port .. "\t", out)
    assert.matches("\naddr\t1\t127%.0%.0%.1:7\t", out)
    assert.matches("\nconnect\t1\ttrue\t", out)
    assert.matches("\ngai_none\t3\tnil\tgetaddrinfo nosuch1%.slow%.test:80: [^\t]+\tEAI_NONAME", out)
    assert.matches("\naddr_none\t3\tnil\taddr nosuch2%.slow%.test:80: [^\t]+\tEAI_NONAME", out)
    assert.matches("\ntcp_none\t3\tnil\tgetaddrinfo nosuch3%.slow%.test:%d+: [^\t]+\tEAI_NONAME", out)
    assert.matches("\nsendto_none\t3\tnil\tsendto nosuch4%.slow%.test:9: [^\t]+\tEAI_NONAME", out)
  end)

  it("outside tasks a lookup still blocks the caller, with the same answers", function()
    local out, status = withslowgai([[
      local S = require "bsdsocket"
      local t0 = S.monotime()
      local a = S.addr("x.slow.test", 80)
      local list = S.getaddrinfo("y.slow.test", 80, { family = S.AF_INET })
      local none, msg, code = S.getaddrinfo("nosuch.slow.test", 80)
      print(("elapsed %.3f"):format(S.monotime() - t0), tostring(a), tostring(list[1].addr),
        tostring(none), msg, code)
    ]], 30)
    if not out then pending("no C compiler for the slow getaddrinfo fixture") end
    assert.equal(0, status, out)
    local elapsed = tonumber(out:match("elapsed (%S+)"))
    assert.truthy(elapsed, out)
    assert.is_true(elapsed >= 2.9, out)   -- three lookups in a row
    assert.matches("\t127%.0%.0%.1:80\t127%.0%.0%.1:80\tnil\t"
      .. "getaddrinfo nosuch%.slow%.test:80: [^\t]+\tEAI_NONAME", out)
  end)

  it("out of descriptors (ulimit -n 64), 100 tasks still resolve side by side, in batches", function()
    local out, status = withslowgai([[
      local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      local n, ok, ticks, maxgap, done = 100, 0, 0, 0, 0
      loop.spawn(function()
        local last = S.monotime()
        while done < n do
          loop.sleep(0.05)
          local now = S.monotime()
          if now - last > maxgap then maxgap = now - last end
          last, ticks = now, ticks + 1
        end
      end)
      local t0 = S.monotime()
      for i = 1, n do
        loop.spawn(function()
          if S.addr("h" .. i .. ".slow.test", 80) == S.addr("127.0.0.1", 80) then ok = ok + 1 end
          done = done + 1
        end)
      end
      assert(loop.run(60))
      print(("elapsed %.3f ok %d ticks %d maxgap %.3f"):format(S.monotime() - t0, ok, ticks, maxgap))
    ]], 60, nil, "ulimit -n 64; SLOW_GAI_MS=300")
    if not out then pending("no C compiler for the slow getaddrinfo fixture") end
    assert.equal(0, status, out)
    local elapsed, ok, maxgap = out:match("elapsed (%S+) ok (%d+) ticks %d+ maxgap (%S+)")
    assert.truthy(elapsed, out)
    print(("resolver: 100 lookups of 0.3 s under ulimit -n 64: %.2f s"):format(tonumber(elapsed)))
    assert.equal("100", ok, out)
    assert.is_true(tonumber(elapsed) < 10, out)   -- in a row: 30 s
    assert.is_true(tonumber(maxgap) < 0.9, out)   -- never frozen (a lookup in place: 1 s)
  end)

  it("a script that ends while a task is still resolving exits cleanly", function()
    local out, status = withslowgai([[
      local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      for i = 1, 5 do loop.spawn(function() S.getaddrinfo("late" .. i .. ".slow.test", 80) end) end
      print("run", loop.run(0.2))
    ]], 30, nil, "SLOW_GAI_MS=5000")
    if not out then pending("no C compiler for the slow getaddrinfo fixture") end
    assert.equal(0, status, out)
    assert.matches("run\tfalse", out)
  end)
end)

describe("a Lua state closed while a lookup is pending", function()
  it("does not crash the process: the worker still has its code after lua_close unloads the module", function()
    -- under the sanitizer build the module needs the ASan runtime first,
    -- which a plain C host does not have
    if os.getenv("BSDSOCKET_SANITIZE") then return end
    local so = slowgai:path()
    if not so then pending("no C compiler for the slow getaddrinfo fixture") end
    local d = net.tmpdir()
    finally(d.remove)
    local cwd = os.getenv("PWD") or "."
    local build = os.getenv("BSDSOCKET_BUILD") or "build"
    if build:sub(1, 1) ~= "/" then build = cwd .. "/" .. build end
    local src, exe = d:path("host.c"), d.dir .. "/host"
    local f = assert(io.open(src, "w"))
    f:write(([[
#include <stdio.h>
#include <unistd.h>
#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"
int main(void) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  if (luaL_dostring(L,
      "package.path = '%s/lua/?.lua;' .. package.path "
      "package.cpath = '%s/?.so;' .. package.cpath "
      "local S = require 'bsdsocket' local loop = require 'bsdsocket.loop' "
      "for i = 1, 5 do loop.spawn(function() S.getaddrinfo('p' .. i .. '.slow.test', 80) end) end "
      "print('run', loop.run(0.1))")) {
    puts(lua_tostring(L, -1));
    return 1;
  }
  lua_close(L);            /* unloads bsdsocket.core while the lookups go on */
  puts("closed");
  fflush(stdout);
  usleep(700000);          /* the workers answer meanwhile (SLOW_GAI_MS=300) */
  puts("exit");
  return 0;
}
]]):format(cwd, build))
    f:close()
    -- the Lua under test's headers and library where the Makefile names
    -- them (make check-lua55, check-musl), else the system's liblua5.4
    local inc, lib = os.getenv("LUA_INC"), os.getenv("LUA_LIB")
    local flags = inc and lib and inc .. " " .. lib
      or "$(pkg-config --cflags --libs lua5.4 2>/dev/null"
         .. " || echo -I/usr/include/lua5.4 -llua5.4)"
    local cc = os.getenv("CC") or "cc"
    if not os.execute(cc .. " -o " .. net.shquote(exe) .. " " .. net.shquote(src) .. " " .. flags
        .. " 2>/dev/null") then
      pending("cannot build a C host against liblua5.4")
    end
    local outfile = d:path("out")
    -- the fixture is built for the host's C library, maybe not timeout's
    local ok = os.execute("SLOW_GAI_MS=300 " .. net.timeout(20) .. " env LD_PRELOAD="
      .. net.shquote(so) .. " " .. net.shquote(exe) .. " > "
      .. net.shquote(outfile) .. " 2>&1")
    local out = net.readfile(outfile) or ""
    assert.is_true(ok == true, out)
    assert.matches("run\tfalse\nclosed\nexit\n", out)
  end)
end)

describe("with a DNS server on loopback that answers in 1 s (private resolv.conf)", function()
  -- The child runs in a mount namespace of its own (unshare -m, as root)
  -- where /etc/resolv.conf names the slow server: the real resolver path,
  -- DNS packets included, without touching the machine's configuration.
  it("100 tasks resolving at once take about 1 s, and NXDOMAIN gives EAI_NONAME", function()
    local function sh(cmd)
      local p = assert(io.popen(cmd))
      local t = p:read("a")
      p:close()
      return t
    end
    if sh("id -u"):match("^(%d+)") ~= "0"
        or not os.execute("unshare -m true 2>/dev/null")
        or not os.execute("command -v python3 >/dev/null 2>&1") then
      pending("needs root, unshare -m and python3")
      return
    end
    local d = net.tmpdir()
    local ready, resolv = d:path("ready"), d:path("resolv.conf")
    -- a loopback address of its own, so that parallel runs do not collide
    local ip = ("127.%d.%d.%d"):format(math.random(2, 254), math.random(0, 254), math.random(2, 254))
    local cwd = os.getenv("PWD") or "."
    local f = assert(io.open(resolv, "w"))
    f:write("nameserver " .. ip .. "\noptions timeout:5 attempts:1\n")
    f:close()
    local pid = sh(net.timeout(60) .. " python3 " .. net.shquote(cwd .. "/spec/helpers/slowdns.py") .. " " .. ip
      .. " 1 55 " .. net.shquote(ready) .. " > /dev/null 2>&1 & echo $!"):match("(%d+)")
    local h
    finally(function()   -- the only finally of this test (busted keeps one)
      if h then h.cleanup() end
      if pid then os.execute("kill " .. pid .. " 2>/dev/null") end
      d:remove()
    end)
    local limit = S.monotime() + 5
    while not net.readfile(ready) and S.monotime() < limit do net.sleep(0.02) end
    assert.truthy(net.readfile(ready), "the DNS server did not start")
    assert.is_nil(resolv:find("'", 1, true))   -- it goes inside sh -c '...'
    local prefix = "unshare -m sh -c 'mount --bind " .. resolv .. " /etc/resolv.conf && exec env \"$@\"' sh"
    h = childproc.spawn(prefix, [[
      local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      local t0 = S.monotime()
      local one = assert(S.getaddrinfo("serial.slow.test", 80, { family = S.AF_INET }))
      local serial = S.monotime() - t0
      local n, ok, ticks, maxgap, done = 100, 0, 0, 0, 0
      local none
      loop.spawn(function()
        local last = S.monotime()
        while done < n do
          loop.sleep(0.05)
          local now = S.monotime()
          if now - last > maxgap then maxgap = now - last end
          last, ticks = now, ticks + 1
        end
      end)
      loop.spawn(function() none = table.pack(S.addr("nosuch.slow.test", 80)) end)
      t0 = S.monotime()
      for i = 1, n do
        loop.spawn(function()
          local list = S.getaddrinfo("h" .. i .. ".slow.test", 80, { family = S.AF_INET })
          if list and list[1].addr == S.addr("127.0.0.1", 80) then ok = ok + 1 end
          done = done + 1
        end)
      end
      assert(loop.run(30))
      print(("first %s serial %.3f parallel %.3f ok %d ticks %d maxgap %.3f"):format(
        tostring(one[1].addr), serial, S.monotime() - t0, ok, ticks, maxgap))
      print("none", none.n, tostring(none[1]), none[2], none[3])
    ]], 60)
    local status = h:wait(60)
    local out = h.output()
    assert.equal(0, status, out)
    local serial, elapsed, ok, ticks, maxgap =
      out:match("first 127%.0%.0%.1:80 serial (%S+) parallel (%S+) ok (%d+) ticks (%d+) maxgap (%S+)")
    assert.truthy(serial, out)
    serial, elapsed, ok, ticks, maxgap = tonumber(serial), tonumber(elapsed),
      tonumber(ok), tonumber(ticks), tonumber(maxgap)
    print(("resolver: 100 lookups through a 1 s DNS server in tasks: %.2f s (one outside: %.2f s); "
      .. "ticker: %d ticks, longest gap %.3f s"):format(elapsed, serial, ticks, maxgap))
    assert.is_true(serial >= 0.9, out)
    assert.equal(100, ok, out)
    assert.is_true(elapsed < 10 * serial, out)
    assert.is_true(ticks >= 5, out)
    assert.is_true(maxgap < 0.9, out)   -- a lookup in place would freeze it for 1 s
    assert.matches("\nnone\t3\tnil\taddr nosuch%.slow%.test:80: [^\t]+\tEAI_NONAME", out)
  end)
end)
