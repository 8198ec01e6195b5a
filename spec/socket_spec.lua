-- Socket objects: creation for every family and type, close, to-be-closed
-- variables, garbage collection, fileno/detach/fromfd, socketpair, tostring.
local net = require "helpers.net"
local S = net.S

-- true when descriptor fd of this process has FD_CLOEXEC (O_CLOEXEC) set
local cloexec = net.cloexec

-- true when descriptor fd of this process is an open socket (the pipe that
-- io.popen needs to look may itself take a just-freed number, so the target
-- must be a socket, not merely exist)
local function isopen(fd)
  return net.issocket(net.fdtarget(fd))
end

local families = {
  { "AF_INET", S.AF_INET },
  { "AF_INET6", S.AF_INET6 },
  { "AF_UNIX", S.AF_UNIX },
}
local types = {
  { "SOCK_STREAM", S.SOCK_STREAM },
  { "SOCK_DGRAM", S.SOCK_DGRAM },
}

describe("S.socket", function()
  for _, fam in ipairs(families) do
    for _, ty in ipairs(types) do
      it("creates an " .. fam[1] .. " " .. ty[1] .. " socket that the kernel agrees about", function()
        local s <close> = assert(S.socket(fam[2], ty[2]))
        assert.equal("userdata", type(s))
        assert.equal("bsdsocket.socket", getmetatable(s).__name)
        local fd = s:fileno()
        assert.is_true(math.type(fd) == "integer" and fd >= 0)
        assert.matches("^bsdsocket%.socket fd=" .. fd .. " " .. fam[1] .. " " .. ty[1] .. " ", tostring(s))
        assert.equal(ty[2], s:getsockopt(S.SOL_SOCKET, S.SO_TYPE))
        assert.equal(fam[2], s:getsockopt(S.SOL_SOCKET, S.SO_DOMAIN))
        assert.is_true(cloexec(fd))
        assert.is_nil(s:gettimeout())      -- blocking by default
      end)
    end
  end

  it("takes an explicit protocol", function()
    local t <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP))
    local u <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP))
    assert.equal(S.IPPROTO_TCP, t:getsockopt(S.SOL_SOCKET, S.SO_PROTOCOL))
    assert.equal(S.IPPROTO_UDP, u:getsockopt(S.SOL_SOCKET, S.SO_PROTOCOL))
  end)

  it("makes a non-blocking socket when the type includes SOCK_NONBLOCK", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK))
    assert.equal(0, s:gettimeout())
    assert.matches(" SOCK_STREAM ", tostring(s))   -- the flag is not part of the type
    assert(s:bind("127.0.0.1", 0))
    assert(s:listen())
    local c, _, code = s:accept()
    assert.is_nil(c)
    assert.equal("EAGAIN", code)
  end)

  it("creates a SOCK_RAW socket where the process may (else pending)", function()
    local s, msg, code = S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP)
    if not s then
      assert.is_true(code == "EPERM" or code == "EACCES", msg)
      pending("raw sockets not permitted here: " .. msg)
    end
    finally(function() s:close() end)
    assert.matches(" AF_INET SOCK_RAW ", tostring(s))
    assert.equal(S.SOCK_RAW, s:getsockopt(S.SOL_SOCKET, S.SO_TYPE))
  end)

  it("returns nil, message, code for a family the kernel does not support", function()
    local s, msg, code = S.socket(S.AF_MAX or 4000, S.SOCK_STREAM)
    assert.is_nil(s)
    assert.equal("string", type(msg))
    assert.equal("EAFNOSUPPORT", code)
    assert.matches("^socket", msg)
  end)
end)

describe("sock:close", function()
  it("returns true, frees the descriptor and may be called again", function()
    local before = net.fds()
    local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local fd = s:fileno()
    assert.is_true(isopen(fd))
    local added = net.newfds(before, 0)
    assert.equal(1, #added)
    assert.matches("^" .. fd .. " %-> ", added[1])
    assert.is_true(net.issocket(added[1]:match(" %-> (.*)")))
    assert.is_true(s:close())
    assert.is_false(isopen(fd))
    assert.is_true(s:close())
    assert.is_true(s:close())
    assert.same({}, net.newfds(before))
  end)

  it("leaves the object unusable: every method raises 'closed'", function()
    local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    s:close()
    assert.error_matches(function() s:fileno() end, "closed socket")
    assert.error_matches(function() s:bind("127.0.0.1", 0) end, "closed socket")
    assert.error_matches(function() s:send("x") end, "closed socket")
  end)

  it("is what a to-be-closed variable does at the end of its scope", function()
    local ref, fd
    do
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
      ref, fd = s, s:fileno()
      assert.is_true(isopen(fd))
    end
    assert.equal("bsdsocket.socket (closed)", tostring(ref))
    assert.is_false(isopen(fd))
  end)

  it("also runs for a to-be-closed variable when an error leaves the scope", function()
    local ref
    local ok = pcall(function()
      local s <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
      ref = s
      error("boom")
    end)
    assert.is_false(ok)
    assert.equal("bsdsocket.socket (closed)", tostring(ref))
  end)
end)

describe("garbage collection", function()
  it("closes sockets that were forgotten without close()", function()
    local before = net.fds()
    for _ = 1, 50 do
      S.socket(S.AF_INET, S.SOCK_STREAM)
    end
    S.socketpair()
    assert.same({}, net.newfds(before))  -- fds/newfds collect garbage first
  end)

  it("does not close a descriptor number that a closed socket used to have", function()
    local a = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    local fd = a:fileno()
    a:close()
    local b <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))  -- the kernel reuses the number
    a = nil  -- luacheck: ignore 311
    collectgarbage(); collectgarbage()
    assert.is_true(isopen(b:fileno()))
    assert(b:bind("127.0.0.1", 0))
    if b:fileno() == fd then assert.is_true(isopen(fd)) end
  end)
end)

describe("fileno, detach and fromfd", function()
  it("fileno gives the descriptor shown by tostring and by /proc", function()
    local s <close> = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
    local fd = s:fileno()
    assert.equal(tostring(fd), tostring(s):match("fd=(%d+)"))
    assert.is_true(isopen(fd))
  end)

  it("detach gives up the descriptor without closing it", function()
    local s = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    local fd = s:fileno()
    assert.equal(fd, s:detach())
    assert.equal("bsdsocket.socket (closed)", tostring(s))
    assert.error_matches(function() s:fileno() end, "closed socket")
    s:close()                                  -- a no-op now
    s = nil  -- luacheck: ignore 311
    collectgarbage(); collectgarbage()
    assert.is_true(isopen(fd))                 -- neither close nor __gc closed it
    local t <close> = assert(S.fromfd(fd))     -- hand it back to an object
    assert.equal(fd, t:fileno())
  end)

  it("fromfd reads family, type and protocol back from the kernel and owns the fd", function()
    local u = assert(S.socket(S.AF_INET6, S.SOCK_DGRAM))
    assert(u:bind("::1", 0))
    local addr = u:getsockname()
    local fd = u:detach()
    local v = assert(S.fromfd(fd))
    assert.matches(" AF_INET6 SOCK_DGRAM ", tostring(v))
    assert.equal(addr, v:getsockname())
    assert.equal(S.IPPROTO_UDP, v:getsockopt(S.SOL_SOCKET, S.SO_PROTOCOL))
    assert.is_nil(v:gettimeout())
    v:close()
    assert.is_false(isopen(fd))                -- fromfd took ownership: no dup
  end)

  it("fromfd of a descriptor that is not a socket returns nil, msg, 'ENOTSOCK'", function()
    local path, cleanup = net.sockpath("plainfile")
    finally(cleanup)
    local f = assert(io.open(path, "w"))
    local fd
    for n, target in pairs(net.fds()) do   -- /proc's path, or lsof's "... path"
      if target == path or target:sub(-#path - 1) == " " .. path then fd = n end
    end
    assert.is_number(fd)
    local s, msg, code = S.fromfd(fd)
    assert.is_nil(s)
    assert.equal("ENOTSOCK", code)
    assert.equal("string", type(msg))
    f:close()
  end)

  it("fromfd raises for an argument that is not an integer", function()
    assert.has_error(function() S.fromfd("three") end)
    assert.has_error(function() S.fromfd(1.5) end)
  end)
end)

describe("S.socketpair", function()
  it("defaults to a connected AF_UNIX SOCK_STREAM pair", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    assert.matches(" AF_UNIX SOCK_STREAM ", tostring(a))
    assert.matches(" AF_UNIX SOCK_STREAM ", tostring(b))
    assert.is_true(cloexec(a:fileno()) and cloexec(b:fileno()))
    assert.equal(5, a:send("hello"))
    assert.equal("hello", b:recv(100))
    assert(b:sendall("back"))
    assert.equal("back", a:recvall(4))
    a:close()
    assert.equal("", b:recv(100))   -- EOF once the other end is closed
  end)

  it("makes a datagram pair that keeps message boundaries", function()
    local a, b = S.socketpair(S.AF_UNIX, S.SOCK_DGRAM)
    finally(function() net.closeall(a, b) end)
    assert.matches(" AF_UNIX SOCK_DGRAM ", tostring(a))
    a:send("one"); a:send("two")
    assert.equal("one", b:recv(100))
    assert.equal("two", b:recv(100))
  end)
end)

describe("tostring(sock)", function()
  it("shows fd, family, type, the local end and the peer", function()
    local c, s = net.tcp_pair()
    finally(function() net.closeall(c, s) end)
    local lp, pp = c:getsockname().port, c:getpeername().port
    assert.equal(("bsdsocket.socket fd=%d AF_INET SOCK_STREAM 127.0.0.1:%d <-> 127.0.0.1:%d")
      :format(c:fileno(), lp, pp), tostring(c))
    assert.equal(("bsdsocket.socket fd=%d AF_INET SOCK_STREAM 127.0.0.1:%d <-> 127.0.0.1:%d")
      :format(s:fileno(), pp, lp), tostring(s))
  end)

  it("shows '-' for the peer of a socket that has none", function()
    local srv <close>, port = net.server("::1")
    assert.equal(("bsdsocket.socket fd=%d AF_INET6 SOCK_STREAM [::1]:%d <-> -")
      :format(srv:fileno(), port), tostring(srv))
  end)

  it("says a closed socket is closed", function()
    local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    s:close()
    assert.equal("bsdsocket.socket (closed)", tostring(s))
  end)
end)

describe("the pollable-object protocol", function()
  it("pollfd is the descriptor, events starts as 'r', timeout is the socket's", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert.equal(s:fileno(), s:pollfd())
    assert.equal("r", s:events())
    assert.is_nil(s:timeout())
    s:settimeout(0.5)
    assert.equal(0.5, s:timeout())
  end)

  it("events says 'w' after a send would have blocked", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    a:settimeout(0)
    assert.equal("EAGAIN", net.fill(a))
    assert.equal("w", a:events())
  end)
end)
