-- sock:sendfile and splice (src:splice(dst) / S.splice) on real loopback
-- sockets and files: counts, offsets, EOF, failures, timeouts, non-blocking
-- sockets, bsdsocket.loop tasks, and no descriptor left open.
local net = require "helpers.net"
local loop = require "bsdsocket.loop"
local S = net.S

local function tmpfile(content)
  local name = os.tmpname()
  local f = assert(io.open(name, "wb"))
  f:write(content)
  f:close()
  return name
end

local function readall(sock, n)
  local got = {}
  local have = 0
  while have < n do
    local s = assert(sock:recv(65536))
    if s == "" then break end
    got[#got + 1] = s
    have = have + #s
  end
  return table.concat(got)
end

describe("sendfile", function()
  local name, content
  before_each(function()
    local t = {}
    for i = 1, 30000 do t[i] = ("%05d\n"):format(i) end
    content = table.concat(t)                       -- 180,000 bytes
    name = tmpfile(content)
  end)
  after_each(function() os.remove(name) end)

  it("sends a Lua file, a range of it, or an integer descriptor's file", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local f <close> = assert(io.open(name, "rb"))
    loop.spawn(function()
      assert.equal(#content, cli:sendfile(f))                  -- the whole file
      assert.equal(10, cli:sendfile(f, 6, 10))                 -- 10 bytes at offset 6
      assert.equal(#content - 179990, cli:sendfile(f, 179990)) -- from offset to the end
      assert.equal(12, cli:sendfile(f, #content - 12, 100))    -- the file ends first
      assert.equal(0, cli:sendfile(f, #content + 5))           -- past the end
      assert.equal(0, cli:sendfile(f, 0, 0))
    end)
    local got
    loop.spawn(function() got = readall(conn, #content + 10 + 10 + 12) end)
    assert.is_true(loop.run(10))
    assert.equal(content .. content:sub(7, 16) .. content:sub(179991) .. content:sub(-12), got)
    assert.equal(0, f:seek())                                  -- the handle's position is untouched
    -- an integer descriptor (the Lua file's own, through a fresh handle)
    local g = assert(io.open(name, "rb"))
    local fd
    -- find g's descriptor: the highest open regular file named `name`
    local fds = net.fds()
    for n, target in pairs(fds) do
      if target == name and (not fd or n > fd) then fd = n end
    end
    assert.is_truthy(fd)
    assert.equal(5, cli:sendfile(fd, 0, 5))
    assert.equal(content:sub(1, 5), conn:recvall(5))
    g:close()
  end)

  it("raises for a closed file, a bad offset, count or argument", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local f = assert(io.open(name, "rb"))
    assert.has_error(function() cli:sendfile(f, -1) end)
    assert.has_error(function() cli:sendfile(f, 0, -1) end)
    assert.has_error(function() cli:sendfile("name") end)
    assert.has_error(function() cli:sendfile(-3) end)
    f:close()
    local ok, err = pcall(cli.sendfile, cli, f)
    assert.is_false(ok)
    assert.matches("closed file", err)
    cli:close()
    assert.has_error(function() cli:sendfile(0) end)
  end)

  it("fails with nil, msg, code for a descriptor that is not a file", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local n, msg, code = cli:sendfile(conn:fileno(), 0, 10)  -- a socket cannot be read by sendfile
    assert.is_nil(n)
    assert.is_string(msg)
    assert.matches("^sendfile ", msg)
    assert.is_truthy(code == "EINVAL" or code == "ESPIPE" or code == "ENOSYS", code)
  end)

  it("times out with the count sent, is EAGAIN non-blocking, EPIPE to a closed peer", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local big = {}
    for i = 1, 64 do big[i] = content end                    -- 11.5 MB: more than the buffers
    local bigname = tmpfile(table.concat(big))
    finally(function() os.remove(bigname) end)
    local f <close> = assert(io.open(bigname, "rb"))
    cli:settimeout(0.1)
    local n, msg, code, sent = cli:sendfile(f)
    assert.is_nil(n)
    assert.equal("ETIMEDOUT", code)
    assert.equal("sendfile 127.0.0.1:" .. conn:getsockname().port .. ": timed out", msg)
    assert.is_true(sent > 0 and sent < #content * 64)
    cli:settimeout(0)
    local code2
    for _ = 1, 100 do
      n, _, code2 = cli:sendfile(f)
      if not n then break end
    end
    assert.is_nil(n)
    assert.equal("EAGAIN", code2)
    conn:close()
    cli:settimeout(1)
    local code3
    for _ = 1, 50 do
      n, _, code3 = cli:sendfile(f, 0, 10)
      if not n and code3 ~= "ETIMEDOUT" then break end
    end
    assert.is_nil(n)
    assert.is_truthy(code3 == "EPIPE" or code3 == "ECONNRESET", code3)
  end)

  it("in a task, waits for room by yielding, and other tasks run meanwhile", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    cli:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
    local f <close> = assert(io.open(name, "rb"))
    local ticks, sent, got = 0, nil, nil
    loop.spawn(function() sent = cli:sendfile(f) end)
    loop.spawn(function()
      local parts, have = {}, 0
      while have < #content do
        loop.sleep(0.001)
        ticks = ticks + 1
        local s = assert(conn:recv(8192))
        parts[#parts + 1] = s
        have = have + #s
      end
      got = table.concat(parts)
    end)
    assert.is_true(loop.run(20))
    assert.equal(#content, sent)
    assert.equal(content, got)
    assert.is_true(ticks > 1)
  end)

  it("in a task, times out with the count sent when the peer stops reading", function()
    local cli, conn = net.tcp_pair()
    finally(function() net.closeall(cli, conn) end)
    local big = {}
    for i = 1, 64 do big[i] = content end
    local bigname = tmpfile(table.concat(big))
    finally(function() os.remove(bigname) end)
    local f <close> = assert(io.open(bigname, "rb"))
    local r
    loop.spawn(function()
      cli:settimeout(0.1)
      r = { cli:sendfile(f) }
    end)
    assert.is_true(loop.run(10))
    assert.is_nil(r[1])
    assert.equal("ETIMEDOUT", r[3])
    assert.is_true(r[4] > 0 and r[4] < #content * 64)
  end)
end)

describe("splice", function()
  it("is there exactly where the kernel has splice(2), nil elsewhere", function()
    local a, b = net.tcp_pair()
    finally(function() net.closeall(a, b) end)
    assert.equal(S.platform.splice, S.splice ~= nil)
    assert.equal(S.platform.splice, a.splice ~= nil)
  end)

  it("moves bytes from one socket to another, 0 at EOF", function()
    local why = net.lacks("splice", "splice(2) is Linux's")
    if why then pending(why) return end
    local a, b = net.tcp_pair()
    local c, d = net.tcp_pair()
    finally(function() net.closeall(a, b, c, d) end)
    assert(a:sendall("through the pipe"))
    assert.equal(16, b:splice(c))
    assert.equal("through the pipe", d:recvall(16))
    assert(a:sendall("0123456789"))
    assert.equal(4, S.splice(b, c, 4))                          -- at most max
    assert.equal("0123", d:recvall(4))
    assert.equal(6, b:splice(c, 100))
    assert.equal("456789", d:recvall(6))
    a:close()
    assert.equal(0, b:splice(c))
  end)

  it("raises for bad arguments, fails for EAGAIN, a timeout and a closed destination", function()
    local why = net.lacks("splice", "splice(2) is Linux's")
    if why then pending(why) return end
    local a, b = net.tcp_pair()
    local c, d = net.tcp_pair()
    finally(function() net.closeall(a, b, c, d) end)
    assert.has_error(function() b:splice("c") end)
    assert.has_error(function() b:splice(c, 0) end)
    assert.has_error(function() b:splice(c, -5) end)
    b:settimeout(0)
    local n, _, code = b:splice(c)
    assert.is_nil(n)
    assert.equal("EAGAIN", code)
    b:settimeout(0.05)
    local msg
    n, msg, code = b:splice(c)
    assert.is_nil(n)
    assert.equal("ETIMEDOUT", code)
    assert.equal("splice 127.0.0.1:" .. a:getsockname().port .. ": timed out", msg)
    d:close()
    b:settimeout(1)
    local code2
    for _ = 1, 50 do
      assert(a:sendall("x"))
      n, _, code2 = b:splice(c)
      if not n then break end
    end
    assert.is_nil(n)
    assert.is_truthy(code2 == "EPIPE" or code2 == "ECONNRESET", code2)
    c:close()
    assert.has_error(function() b:splice(c) end)
  end)

  it("in tasks: waits for the source, then for room at the destination, and relays a stream", function()
    local why = net.lacks("splice", "splice(2) is Linux's")
    if why then pending(why) return end
    local a, b = net.tcp_pair()
    local c, d = net.tcp_pair()
    finally(function() net.closeall(a, b, c, d) end)
    c:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4096)
    local payload = {}
    for i = 1, 20000 do payload[i] = ("%05d|"):format(i) end
    payload = table.concat(payload)
    local moved, got = 0, nil
    loop.spawn(function()
      loop.sleep(0.01)
      assert(a:sendall(payload))
      a:close()
    end)
    loop.spawn(function()
      while true do
        local n = assert(b:splice(c))
        if n == 0 then break end
        moved = moved + n
      end
      c:shutdown("w")
    end)
    loop.spawn(function()
      local parts = {}
      while true do
        loop.sleep(0.001)
        local s = assert(d:recv(5000))
        if s == "" then break end
        parts[#parts + 1] = s
      end
      got = table.concat(parts)
    end)
    assert.is_true(loop.run(20))
    assert.equal(#payload, moved)
    assert.equal(payload, got)
  end)

  it("in a task: times out waiting for the source, and a close by another task ends the wait", function()
    local why = net.lacks("splice", "splice(2) is Linux's")
    if why then pending(why) return end
    local a, b = net.tcp_pair()
    local c, d = net.tcp_pair()
    finally(function() net.closeall(a, b, c, d) end)
    local r1, r2
    loop.spawn(function()
      b:settimeout(0.05)
      r1 = { b:splice(c) }
      b:settimeout(nil)
      r2 = { b:splice(c) }
    end)
    loop.spawn(function()
      loop.sleep(0.2)
      b:close()
    end)
    assert.is_true(loop.run(5))
    assert.equal("ETIMEDOUT", r1[3])
    assert.is_nil(r2[1])
    assert.equal("EBADF", r2[3])
  end)

  it("leaves no descriptor open, the splice's pipe included", function()
    local why = net.lacks("splice", "splice(2) is Linux's")
    if why then pending(why) return end
    local before = net.fds()
    for _ = 1, 20 do
      local a, b = net.tcp_pair()
      local c, d = net.tcp_pair()
      a:sendall("x")
      b:splice(c)
      d:recv(1)
      b:settimeout(0)
      b:splice(c)                      -- EAGAIN
      d:close()
      a:sendall("y")
      b:settimeout(0.5)
      for _ = 1, 5 do a:sendall("z"); if not b:splice(c) then break end end
      net.closeall(a, b, c, d)
    end
    local f = assert(io.open("/etc/passwd", "rb"))
    local cli, conn = net.tcp_pair()
    cli:sendfile(f, 0, 10)
    f:close()
    net.closeall(cli, conn)
    assert.same({}, (net.newfds(before)))
  end)
end)
