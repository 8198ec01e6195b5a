-- luacheck: std +busted
-- Linux abstract Unix names, SOCK_SEQPACKET, interface names and indexes,
-- IPv6 scope ids.
local S = require "bsdsocket"
local net = require "helpers.net"

local function abstractname()
  return "\0bsdsocket-spec-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9))
end

describe("abstract Unix names", function()
  it("are given as a path starting with NUL and shown with @", function()
    if not S.platform.abstract then   -- a leading NUL is refused there
      assert.has_error(function() S.addr(abstractname()) end,
        "bad argument #1 to 'addr' (abstract Unix names (a leading NUL) are Linux's)")
      pending(net.lacks("abstract", "abstract Unix names are Linux's"))
      return
    end
    local name = abstractname()
    local a = S.addr(name)
    assert.equal(S.AF_UNIX, a.family)
    assert.equal(name, a.path)
    assert.equal("unix:@" .. name:sub(2), tostring(a))
    assert.equal(S.addr(name), a)
    assert.are_not.equal(S.addr(name .. "x"), a)
  end)

  it("bind, listen, connect and accept without a file", function()
    local why = net.lacks("abstract", "abstract Unix names are Linux's")
    if why then pending(why) return end
    local name = abstractname()
    local srv <close> = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    assert(srv:bind(name))
    assert(srv:listen())
    assert.equal(name, srv:getsockname().path)
    assert.matches("unix:@bsdsocket%-spec%-", tostring(srv), 1, false)
    local cli <close> = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    assert(cli:connect(name))
    local conn <close> = srv:accept()
    assert.equal(name, cli:getpeername().path)
    assert(cli:sendall("abstract"))
    assert.equal("abstract", conn:recvall(8))
    -- no file appears in the current directory or /
    assert.is_nil(io.open(name:sub(2)))
    -- the name is taken while srv is open
    local other <close> = S.socket(S.AF_UNIX, S.SOCK_STREAM)
    local ok, msg, code = other:bind(name)
    assert.is_nil(ok); assert.equal("EADDRINUSE", code); assert.matches("unix:@", msg)
  end)

  it("work with datagrams and recvfrom names the abstract sender", function()
    local why = net.lacks("abstract", "abstract Unix names are Linux's")
    if why then pending(why) return end
    local rname, sname = abstractname(), abstractname() .. "s"
    local r <close> = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    local s <close> = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    assert(r:bind(rname)); assert(s:bind(sname))
    assert(s:sendto("hi", rname))
    local data, from = r:recvfrom(10)
    assert.equal("hi", data)
    assert.equal(sname, from.path)
    assert.equal("unix:@" .. sname:sub(2), tostring(from))
  end)

  it("show a filesystem path and an unnamed socket readably", function()
    assert.equal("unix:/tmp/x.sock", tostring(S.addr("/tmp/x.sock")))
    local a <close> = S.socketpair()
    assert.equal("unix:", tostring(a:getsockname()))
  end)
end)

describe("SOCK_SEQPACKET", function()
  it("keeps message boundaries on a socketpair", function()
    local a, b = S.socketpair(S.AF_UNIX, S.SOCK_SEQPACKET)
    finally(function() a:close(); b:close() end)
    assert.matches("SOCK_SEQPACKET", tostring(a))
    assert(a:send("one")); assert(a:send("two!")); assert(a:send(""))
    assert.equal("one", b:recv(100))
    assert.equal("two!", b:recv(100))
    assert.equal("", b:recv(100))         -- an empty record
    a:send("truncated")
    local data, _, _, flags = b:recvmsg(3)
    assert.equal("tru", data)             -- the rest of the record is discarded
    assert.is_true(flags & S.MSG_TRUNC ~= 0)
    a:send("next")
    assert.equal("next", b:recv(100))
    a:close()
    assert.equal("", b:recv(100))         -- EOF
  end)

  it("listens, accepts and tells the peer's credentials on a path", function()
    local path = os.tmpname()
    os.remove(path)
    finally(function() os.remove(path) end)
    local srv <close> = S.socket(S.AF_UNIX, S.SOCK_SEQPACKET)
    assert(srv:bind(path)); assert(srv:listen())
    local cli <close> = S.socket(S.AF_UNIX, S.SOCK_SEQPACKET)
    assert(cli:connect(path))
    local conn <close>, peer = srv:accept()
    assert.equal(S.AF_UNIX, peer.family)
    assert.matches("SOCK_SEQPACKET unix:" .. path, tostring(conn), 1, true)
    assert.same(cli:getpeercred(), conn:getpeercred())
    assert(cli:sendmsg({ "rec", "ord" }))
    assert.equal("record", conn:recv(100))
  end)
end)

describe("interfaces and IPv6 scope ids", function()
  it("if_nametoindex and if_indextoname are inverses", function()
    local idx = S.if_nametoindex(net.loopback())
    assert.is_true(math.type(idx) == "integer" and idx >= 1)
    assert.equal(net.loopback(), S.if_indextoname(idx))
    local ok, msg, code = S.if_nametoindex("nosuchif0")
    assert.is_nil(ok); assert.matches("if_nametoindex nosuchif0", msg, 1, true); assert.is_string(code)
    local ok2, _, code2 = S.if_indextoname(0x7FFFFF00)
    assert.is_nil(ok2); assert.equal("ENXIO", code2)
    assert.has_error(function() S.if_indextoname(0) end)
  end)

  it("an IPv6 link-local address keeps its scope id by name or number", function()
    local lo = S.if_nametoindex(net.loopback())
    local a = assert(S.addr("fe80::1%" .. net.loopback(), 80))
    assert.equal(S.AF_INET6, a.family)
    assert.equal("fe80::1", a.host)
    assert.equal(lo, a.scope_id)
    assert.equal("[fe80::1%lo]:80", tostring(a))
    local b = assert(S.addr("fe80::1%" .. lo, 80))
    assert.equal(a, b)
    assert.are_not.equal(a, S.addr("fe80::1", 80))
    assert.equal(0, S.addr("::1", 80).scope_id)
    local ai = assert(S.getaddrinfo("fe80::1%lo", "80", { socktype = S.SOCK_DGRAM }))
    assert.equal(lo, ai[1].addr.scope_id)
  end)

  it("a scoped address reaches the socket layer", function()
    local s <close> = S.socket(S.AF_INET6, S.SOCK_DGRAM)
    -- lo has no fe80:: address: the kernel refuses, naming the scoped address
    local ok, msg, code = s:bind("fe80::1%lo", 0)
    assert.is_nil(ok)
    assert.equal("EADDRNOTAVAIL", code)
    assert.matches("[fe80::1%lo]:0", msg, 1, true)
  end)
end)
