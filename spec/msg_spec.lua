-- luacheck: std +busted
-- sendmsg/recvmsg: scatter/gather, SCM_RIGHTS, SCM_CREDENTIALS, raw
-- ancillary data, getpeercred, timeouts and the loop's yield protocol.
local S = require "bsdsocket"
local net = require "helpers.net"

local PID = net.pid

local cloexec = net.cloexec

describe("sendmsg/recvmsg", function()
  it("gathers a list of parts into one message and scatters nothing extra", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    assert.equal(11, a:sendmsg({ "hello", " ", "world" }))
    local data, addr, anc, flags = b:recvmsg(100)
    assert.equal("hello world", data)
    assert.is_nil(addr)                 -- connected stream: no sender address
    assert.same({}, anc)
    assert.equal(0, flags)
    assert.equal(3, a:sendmsg("abc"))   -- a single string is one part
    assert.equal("abc", (b:recvmsg(100)))
    assert.equal(0, a:sendmsg({}))      -- no parts: an empty message
  end)

  it("sends to an address and reports the sender", function()
    local r <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(r:bind("127.0.0.1", 0))
    local s <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(s:bind("127.0.0.1", 0))
    assert.equal(4, s:sendmsg({ "pi", "ng" }, r:getsockname()))
    local port = r:getsockname().port
    assert.equal(2, s:sendmsg("hi", "127.0.0.1", port))   -- host, port form
    local data, from, anc = r:recvmsg(100)
    assert.equal("ping", data)
    assert.equal(s:getsockname(), from)
    assert.same({}, anc)
    assert.equal("hi", (r:recvmsg(100)))
  end)

  it("truncates a long datagram and says so in the flags", function()
    local a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    finally(function() a:close(); b:close() end)
    a:sendmsg("0123456789")
    local data, _, _, flags = b:recvmsg(4)
    assert.equal("0123", data)
    assert.is_true(flags & S.MSG_TRUNC ~= 0)
    a:sendmsg("0123456789")
    data = b:recvmsg(4, nil, S.MSG_TRUNC)    -- real length reported, no overrun
    assert.equal("0123", data)
  end)

  it("passes sockets with SCM_RIGHTS; they arrive as working, close-on-exec socket objects", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    local x, y = S.socketpair()
    local before = net.fds()
    local xfd, yfd = x:fileno(), y:fileno()
    assert.equal(1, a:sendmsg("!", nil, { rights = { x, y:fileno() } }))
    x:close(); y:close()                    -- the copies in flight stay open
    local data, _, anc = b:recvmsg(10)
    assert.equal("!", data)
    assert.equal(2, #anc.rights)
    local x2, y2 = anc.rights[1], anc.rights[2]
    assert.equal("bsdsocket.socket", getmetatable(x2).__name)
    assert.equal(S.AF_UNIX, x2:getsockname().family)
    assert.is_true(cloexec(x2:fileno()))
    assert.is_true(cloexec(y2:fileno()))
    assert(x2:sendall("through the passed socket"))
    assert.equal("through the passed socket", y2:recvall(25))
    x2:close(); y2:close()
    -- nothing new stays open, and x and y are gone (a leaked copy could take
    -- over x's number: it would point to the same socket)
    assert.same({}, net.newfds(before))
    local gone = net.gonefds(before)
    assert.is_truthy(gone[xfd] and gone[yfd])
  end)

  it("gives descriptors that are not sockets as integers", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    assert(a:sendmsg("f", nil, { rights = { 2 } }))   -- stderr
    local _, _, anc = b:recvmsg(10)
    local fd = anc.rights[1]
    assert.is_true(math.type(fd) == "integer" and fd > 2)
    assert.is_true(cloexec(fd))
    local nope, _, code = S.fromfd(fd)
    assert.is_nil(nope); assert.equal("ENOTSOCK", code)
  end)

  it("closes what does not fit the ancillary buffer (MSG_CTRUNC) and leaks nothing", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    local socks = {}
    for i = 1, 6 do socks[i] = S.socket(S.AF_INET, S.SOCK_DGRAM) end
    local before = net.fds()
    local fds = {}
    for i = 1, 6 do fds[i] = socks[i]:fileno() end
    assert(a:sendmsg("x", nil, { rights = socks }))
    for i = 1, 6 do socks[i]:close() end
    local _, _, anc, flags = b:recvmsg(10, 24)   -- room for a few descriptors only
    assert.is_true(flags & S.MSG_CTRUNC ~= 0)
    assert.is_true(#anc.rights < 6)
    for _, s in ipairs(anc.rights) do s:close() end
    assert.same({}, net.newfds(before))
    local gone = net.gonefds(before)
    for i = 1, 6 do assert.is_truthy(gone[fds[i]], "socket " .. i .. " still open") end
  end)

  it("passes sockets across many messages without leaking", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    local before = net.fds()
    for _ = 1, 200 do
      local s = S.socket(S.AF_INET, S.SOCK_STREAM)
      assert(a:sendmsg("s", nil, { rights = { s, s } }))
      s:close()
      local _, _, anc = b:recvmsg(1)
      assert.equal(2, #anc.rights)
      anc.rights[1]:close(); anc.rights[2]:close()
    end
    assert.same({}, net.newfds(before))
  end)

  it("delivers SCM_CREDENTIALS to a receiver with SO_PASSCRED, sent or not", function()
    local why = net.lacks("scm_credentials", "no SCM_CREDENTIALS (FreeBSD's "
      .. "SCM_CREDS carries no choice of pid; macOS has neither)")
    if why then pending(why) return end
    local a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    finally(function() a:close(); b:close() end)
    assert(b:setsockopt(S.SOL_SOCKET, S.SO_PASSCRED, true))
    local me = a:getpeercred()
    assert(a:sendmsg("implicit"))
    local data, _, anc = b:recvmsg(100)
    assert.equal("implicit", data)
    assert.same(me, anc.credentials)
    assert(a:sendmsg("explicit", nil, { credentials = true }))
    _, _, anc = b:recvmsg(100)
    assert.same(me, anc.credentials)
    assert(a:sendmsg("table", nil, { credentials = { pid = me.pid } }))
    _, _, anc = b:recvmsg(100)
    assert.same(me, anc.credentials)
  end)

  it("getpeercred gives pid, uid and gid of the peer", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    if not S.platform.peercred then   -- nothing stands in: ENOTSUP
      local ok, msg, code = a:getpeercred()
      assert.same({ nil, "ENOTSUP" }, { ok, code })
      assert.matches("^getpeercred: not supported on", msg)
      local why = net.lacks("peercred", "no SO_PEERCRED, LOCAL_PEERCRED "
        .. "or getpeereid")
      pending(why)
      return
    end
    local cred = a:getpeercred()
    assert.equal(PID, cred.pid)
    assert.is_true(math.type(cred.uid) == "integer" and math.type(cred.gid) == "integer")
    assert.same(cred, b:getpeercred())
  end)

  it("returns other ancillary data raw: IP_TTL with IP_RECVTTL", function()
    local r <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(r:bind("127.0.0.1", 0))
    assert(r:setsockopt(S.IPPROTO_IP, S.IP_RECVTTL, true))
    local s <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    assert(s:setsockopt(S.IPPROTO_IP, S.IP_TTL, 42))
    assert(s:sendto("ttl", r:getsockname()))
    local _, _, anc = r:recvmsg(10)
    assert.equal(1, #anc)
    assert.equal(S.IPPROTO_IP, anc[1].level)
    assert.equal(S.IP_TTL, anc[1].type)
    assert.equal(42, (string.unpack("=i4", anc[1].data)))
  end)

  it("sends raw ancillary entries", function()
    local a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    finally(function() a:close(); b:close() end)
    local s = S.socket(S.AF_INET, S.SOCK_DGRAM)
    local raw = { level = S.SOL_SOCKET, type = S.SCM_RIGHTS, data = string.pack("=i4", s:fileno()) }
    assert(a:sendmsg("r", nil, { raw }))
    s:close()
    local _, _, anc = b:recvmsg(10)
    assert.equal(1, #anc.rights)
    anc.rights[1]:close()
  end)

  it("honours timeouts and non-blocking mode", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    b:settimeout(0.05)
    local t0 = S.monotime()
    local ok, msg, code = b:recvmsg(10)
    assert.is_nil(ok)
    assert.equal("ETIMEDOUT", code)
    assert.matches("^recvmsg", msg)
    assert.is_true(S.monotime() - t0 >= 0.04)
    b:settimeout(0)
    ok, msg, code = b:recvmsg(10)
    assert.matches("^recvmsg", msg)
    assert.is_nil(ok); assert.equal("EAGAIN", code)
    a:settimeout(0)
    local big = string.rep("x", 65536)
    local sent = 0
    for _ = 1, 1000 do
      local n, _, c = a:sendmsg({ big })
      if not n then assert.equal("EAGAIN", c); break end
      sent = sent + n
    end
    assert.is_true(sent > 0)
    a:settimeout(0.05)
    ok, msg, code = a:sendmsg(big)
    assert.is_nil(ok); assert.equal("ETIMEDOUT", code); assert.matches("^sendmsg", msg)
  end)

  it("yields to the loop inside a task and resumes", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    local co = coroutine.create(function() return b:recvmsg(10) end)
    S._tasks[co] = true
    local ok, what, sock, events, deadline = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("bsdsocket.wait", what)
    assert.equal(b, sock)
    assert.equal(1, events)
    assert.is_nil(deadline)
    a:sendmsg({ "wo", "ke" })
    local ok2, data = coroutine.resume(co, true)
    assert.is_true(ok2)
    assert.equal("woke", data)
    -- a deadline the scheduler says has passed
    b:settimeout(5)
    co = coroutine.create(function() return b:recvmsg(10) end)
    S._tasks[co] = true
    local _, _, _, _, dl = coroutine.resume(co)
    assert.is_number(dl)
    local _, r, msg, code = coroutine.resume(co, false)
    assert.is_nil(r); assert.equal("ETIMEDOUT", code); assert.matches("^recvmsg", msg)
  end)

  it("raises on programming mistakes", function()
    local a, b = S.socketpair()
    finally(function() a:close(); b:close() end)
    assert.has_error(function() a:sendmsg({ "x", 1 }) end)
    assert.has_error(function() a:sendmsg(42) end)
    assert.has_error(function() a:sendmsg("x", nil, { rights = { "nope" } }) end)
    assert.has_error(function() a:sendmsg("x", nil, { rights = { -1 } }) end)
    assert.has_error(function() a:sendmsg("x", nil, { "notatable" }) end)
    assert.has_error(function() b:recvmsg(-1) end)
    assert.has_error(function() b:recvmsg(10, 1e9) end)
    local c = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    c:close()
    assert.has_error(function() a:sendmsg("x", nil, { rights = { c } }) end)
    assert.has_error(function() c:recvmsg(10) end)
    assert.has_error(function() c:getpeercred() end)
    assert.has_error(function() S.socket(S.AF_INET, S.SOCK_DGRAM).recvmsg({}, 10) end)
  end)

  it("reports system errors as nil, message, code", function()
    local a <close> = S.socket(S.AF_INET, S.SOCK_STREAM)
    local ok, msg, code = a:sendmsg("x")
    assert.is_nil(ok)
    assert.is_string(msg)
    assert.is_true(code == "EPIPE" or code == "ENOTCONN")
    local u <close> = S.socket(S.AF_INET, S.SOCK_DGRAM)
    ok, msg, code = u:sendmsg(string.rep("x", 70000), "127.0.0.1", 9)
    assert.is_nil(ok); assert.equal("EMSGSIZE", code); assert.matches("127.0.0.1:9", msg)
  end)
end)
