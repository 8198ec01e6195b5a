-- luacheck: std +busted
-- What csrc/platform.h decides: S.platform names the platform and which
-- way each call goes, and the ways without the fast system calls give the
-- same results. `make check-fallbacks` runs this file (and the specs of
-- each call) against a build with those calls turned off.
local S = require "bsdsocket"
local net = require "helpers.net"

-- Whether descriptor fd of this process is open in a program it execs:
-- python3 started by the shell inherits what is not close-on-exec.
local function inherited(fd)
  local p = assert(io.popen(("python3 -c 'import os, sys\n"
    .. "try:\n os.fstat(%d)\n print(\"open\")\n"
    .. "except OSError:\n print(\"closed\")' 2>&1"):format(fd)))
  local out = p:read("a")
  p:close()
  assert.is_truthy(out == "open\n" or out == "closed\n", out)
  return out == "open\n"
end

-- O_NONBLOCK of s's descriptor, as S.fromfd reads it back (timeout 0)
local function fdnonblocking(s)
  local t = assert(S.fromfd(s:fileno()))
  local nonblock = t:gettimeout() == 0
  t:detach()
  return nonblock
end

describe("S.platform", function()
  it("names the system uname names, and each capability as a boolean", function()
    local p = assert(io.popen("uname -s"))
    local uname = p:read("l")
    p:close()
    local os = ({ Linux = "linux", Darwin = "macos", FreeBSD = "freebsd",
                  NetBSD = "bsd", OpenBSD = "bsd", DragonFly = "bsd" })[uname]
    assert.equal(os or "unix", S.platform.os)
    for _, cap in ipairs({ "accept4", "sock_cloexec", "msg_nosignal", "so_nosigpipe",
                           "sendfile", "splice", "mmsg", "msg_cmsg_cloexec",
                           "so_domain", "so_protocol", "peercred", "scm_credentials",
                           "abstract", "memmem", "ip_mreqn" }) do
      assert.is_boolean(S.platform[cap], cap)
    end
    -- every write avoids SIGPIPE one way or the other on the real platforms
    if not S.platform.fallbacks then
      assert.is_true(S.platform.msg_nosignal or S.platform.so_nosigpipe)
    end
  end)
end)

describe("descriptors made without SOCK_CLOEXEC and accept4", function()
  it("socket, socketpair and accept give close-on-exec descriptors", function()
    local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    local nb <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM | S.SOCK_NONBLOCK))
    local a, b = assert(S.socketpair())
    local srv, port = net.server()
    finally(function() net.closeall(srv, a, b) end)
    local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(c:connect("127.0.0.1", port))
    local conn <close> = assert(srv:accept())
    for _, x in ipairs({ s, nb, a, b, c, conn, srv }) do
      assert.is_false(inherited(x:fileno()), tostring(x))
    end
  end)

  it("SOCK_NONBLOCK in the type makes the descriptor non-blocking, nothing else", function()
    local nb <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM | S.SOCK_NONBLOCK))
    local bl <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert.is_true(fdnonblocking(nb))
    assert.is_false(fdnonblocking(bl))
    assert.equal(0, nb:gettimeout())
    assert.equal(S.SOCK_STREAM, nb:getsockopt(S.SOL_SOCKET, S.SO_TYPE))
    local a, b = assert(S.socketpair(S.AF_UNIX, S.SOCK_STREAM | S.SOCK_NONBLOCK))
    finally(function() net.closeall(a, b) end)
    assert.is_true(fdnonblocking(a) and fdnonblocking(b))
    assert.matches("SOCK_STREAM", tostring(a))
  end)

  it("a connection accepted from a non-blocking listener still blocks by default", function()
    local srv, port = net.server()
    finally(function() srv:close() end)
    srv:settimeout(0)
    local c <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
    assert(c:connect("127.0.0.1", port))
    local conn, err
    for _ = 1, 200 do                      -- loopback: queued at once, or nearly
      conn, err = srv:accept()
      if conn then break end
      net.sleep(0.01)
    end
    assert(conn, err)
    finally(function() conn:close() end)
    assert.is_nil(conn:gettimeout())
    -- whatever O_NONBLOCK the descriptor has, a blocking recv waits
    conn:settimeout(0.1)
    local ok, _, code = conn:recv(10)
    assert.is_nil(ok)
    assert.equal("ETIMEDOUT", code)
    conn:settimeout(nil)
    assert(c:sendall("hi"))
    assert.equal("hi", conn:recvall(2))
  end)
end)

describe("fromfd without SO_DOMAIN", function()
  it("reads family, type and protocol back for TCP, UDP, IPv6 and Unix sockets", function()
    local cases = {
      { S.AF_INET, S.SOCK_STREAM, S.IPPROTO_TCP, " AF_INET SOCK_STREAM " },
      { S.AF_INET, S.SOCK_DGRAM, S.IPPROTO_UDP, " AF_INET SOCK_DGRAM " },
      { S.AF_INET6, S.SOCK_STREAM, S.IPPROTO_TCP, " AF_INET6 SOCK_STREAM " },
      { S.AF_UNIX, S.SOCK_DGRAM, 0, " AF_UNIX SOCK_DGRAM " },
    }
    for _, c in ipairs(cases) do
      local s = assert(S.socket(c[1], c[2]))       -- unbound: no name yet
      local v <close> = assert(S.fromfd(s:detach()))
      assert.matches(c[4], tostring(v), 1, true)
      local probe = v:getsockname()
      assert.equal(c[1], probe.family)
      local again = assert(S.fromfd(v:fileno()))
      assert.matches(c[4], tostring(again), 1, true)
      again:detach()
    end
  end)
end)

describe("SIGPIPE", function()
  it("no write to a closed peer raises it, and its disposition is left alone", function()
    local out, ok = net.run_lua([[
      local S = require "bsdsocket"
      local codes = {}
      local function note(_, _, code) codes[#codes + 1] = code or "ok" end
      local a, b = S.socketpair()
      b:close()
      note(a:send("x"))
      note(a:sendall(("y"):rep(100000)))
      note(a:send({ "p", "q" }))
      note(a:sendall({ "p", ("q"):rep(100000) }))
      note(a:sendmsg({ "m" }))
      local path = os.tmpname()
      local w = assert(io.open(path, "w")) w:write(("f"):rep(5000)) w:close()
      local r = assert(io.open(path))
      note(a:sendfile(r))
      r:close() os.remove(path)
      local d1, d2 = S.socketpair(S.AF_UNIX, S.SOCK_SEQPACKET)
      d2:close()
      note(d1:sendmmsg({ "one", "two" }))
      print(table.concat(codes, " "))
      io.stdout:flush()
      -- still deadly: nothing ignored it or left it blocked
      os.execute("kill -PIPE $PPID")
      print("survived")
    ]], 20)
    assert.is_falsy(ok, out)                -- the kill at the end killed it
    local line = out:match("^([^\n]*)\n")
    assert.is_string(line, out)
    assert.is_nil(out:find("survived", 1, true), out)
    local n = 0
    for code in line:gmatch("%S+") do
      n = n + 1
      assert.is_truthy(code == "EPIPE" or code == "ECONNRESET" or code == "ENOTCONN",
        ("write #%d: %s"):format(n, code))
    end
    assert.equal(7, n)
  end)
end)
