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
      local _
      n, _, code2 = cli:sendfile(f)
      if not n then break end
    end
    assert.is_nil(n)
    assert.equal("EAGAIN", code2)
    conn:close()
    cli:settimeout(1)
    local code3
    for _ = 1, 50 do
      local _
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

-- The peer goes away after part of the data was sent: sendfile(2) and
-- splice(2) take no MSG_NOSIGNAL, and a call that moved some bytes can
-- still raise SIGPIPE (the next chunk of the same call meets the reset).
-- Each case runs in a child lua5.4, so a SIGPIPE shows as exit status 141
-- instead of killing busted. The child also reads /proc/self/status: after
-- the call no SIGPIPE is pending (SigPnd/ShdPnd) and the signal mask is
-- what it was (SigBlk).
describe("SIGPIPE from a peer that goes away mid-call", function()
  local SIGSTATE = [[
    local function sigstate()
      local f = assert(io.open("/proc/self/status"))
      local t = f:read("a")
      f:close()
      local bit = 1 << 12                         -- SIGPIPE is signal 13
      local function has(field)
        return (tonumber(t:match(field .. ":%s*(%x+)"), 16) & bit) ~= 0
      end
      return has("SigPnd") or has("ShdPnd"), t:match("SigBlk:%s*(%x+)")
    end
  ]]

  local function runchild(body)
    local out, ok, how, rc = net.run_lua(SIGSTATE .. body, 20)
    assert.is_true(ok, ("child %s %s, output: %s"):format(how, rc, out))
    return out
  end

  local function fourmib()
    local name = os.tmpname()
    local f = assert(io.open(name, "wb"))
    f:write(("0123456789abcdef"):rep(4 * 1024 * 1024 / 16))
    f:close()
    return name
  end

  local function checkline(out, tag)
    local code, sent, pend, same = out:match(tag .. " nil (%u+) (%d+) (%a+) (%a+)\n")
    assert.is_truthy(code, out)
    -- EPIPE here: the peer's FIN came first (it closed at once), so its
    -- reset finds the connection half-closed, which Linux reports as EPIPE
    assert.equal("EPIPE", code)
    sent = tonumber(sent)
    assert.is_true(sent >= 0 and sent < 4 * 1024 * 1024, out)
    assert.equal("false", pend)       -- no SIGPIPE left pending
    assert.equal("true", same)        -- the mask restored
  end

  it("sendfile of a 4 MiB file to a peer that accepts and closes returns nil, msg, EPIPE, sent",
     function()
    local name = fourmib()
    finally(function() os.remove(name) end)
    local out = runchild(([[
      local S = require "bsdsocket"
      local loop = require "bsdsocket.loop"
      local name = %q
      local function case(tag, intask)
        local srv = assert(S.tcp_listen("127.0.0.1", 0))
        local a = assert(S.tcp_connect("127.0.0.1", srv:getsockname().port))
        local c = assert(srv:accept())
        c:close()
        local f = assert(io.open(name, "rb"))
        local _, blk0 = sigstate()
        local r
        if intask then
          loop.spawn(function() r = table.pack(a:sendfile(f)) end)
          assert(loop.run(10))
        else
          r = table.pack(a:sendfile(f))
        end
        local pend, blk = sigstate()
        assert(r[1] == nil and r.n == 4, tostring(r[1]))
        assert(r[2]:match("^sendfile "), r[2])
        print(table.concat({tag, tostring(r[1]), r[3], r[4], tostring(pend),
          tostring(blk == blk0)}, " "))
        f:close()
        a:close()
        srv:close()
      end
      for _ = 1, 3 do case("plain", false) end
      case("task", true)
    ]]):format(name))
    checkline(out, "plain")
    checkline(out, "task")
  end)

  it("with SIGPIPE blocked by the program: leaves none behind, keeps one pending before", function()
    local name = fourmib()
    local d = net.tmpdir()
    finally(function() os.remove(name) d:remove() end)
    local script, outfile = d:path("child.lua"), d:path("out")
    local f = assert(io.open(script, "w"))
    f:write(SIGSTATE, ([[
      local S = require "bsdsocket"
      local name = %q
      local pid = io.open("/proc/self/stat"):read("a"):match("^%%d+")
      local function case(tag)
        local srv = assert(S.tcp_listen("127.0.0.1", 0))
        local a = assert(S.tcp_connect("127.0.0.1", srv:getsockname().port))
        assert(srv:accept()):close()
        local fh = assert(io.open(name, "rb"))
        local n, _, code, sent = a:sendfile(fh)
        local pend, blk = sigstate()
        print(table.concat({ tag, tostring(n), code, tostring(sent), tostring(pend), blk }, " "))
        fh:close()
        a:close()
        srv:close()
      end
      local _, blk = sigstate()
      print("blocked " .. blk)
      case("none-before")
      os.execute("kill -PIPE " .. pid)     -- pending (blocked) before the call
      print("before " .. tostring((sigstate())))
      case("one-before")
    ]]):format(name))
    f:close()
    -- the mask is inherited across exec: python blocks SIGPIPE, then runs lua5.4
    local ok = os.execute(net.childenv() .. " timeout 20 python3 -c "
      .. net.shquote("import os, signal, sys; signal.pthread_sigmask(signal.SIG_BLOCK, "
        .. "[signal.SIGPIPE]); os.execvp('lua5.4', ['lua5.4', sys.argv[1]])")
      .. " " .. net.shquote(script) .. " > " .. net.shquote(outfile) .. " 2>&1")
    local out = net.readfile(outfile) or ""
    assert.is_true(ok, out)
    local blk = out:match("blocked (%x+)")
    assert.is_truthy(blk, out)
    assert.is_true(tonumber(blk, 16) & (1 << 12) ~= 0, out)   -- SIGPIPE is blocked
    -- the call's own SIGPIPE is taken off (the old code left it pending)
    assert.is_truthy(out:match("none%-before nil EPIPE %d+ false " .. blk), out)
    assert.is_truthy(out:match("before true"), out)
    -- one pending before the call stays pending, for the program to take
    assert.is_truthy(out:match("one%-before nil EPIPE %d+ true " .. blk), out)
  end)

  it("splice to a peer that closed returns nil, msg, EPIPE or ECONNRESET, never SIGPIPE", function()
    local why = net.lacks("splice", "splice(2) is Linux's")
    if why then pending(why) return end
    local out = runchild([[
      local S = require "bsdsocket"
      local function pair()
        local srv = assert(S.tcp_listen("127.0.0.1", 0))
        local a = assert(S.tcp_connect("127.0.0.1", srv:getsockname().port))
        local b = assert(srv:accept())
        srv:close()
        return a, b
      end
      local a, b = pair()
      local c, d = pair()
      d:close()
      local _, blk0 = sigstate()
      local chunk = ("x"):rep(65536)
      local n, msg, code
      for _ = 1, 50 do
        assert(a:sendall(chunk))
        n, msg, code = b:splice(c, 1 << 20)
        if not n then break end
      end
      local pend, blk = sigstate()
      assert(n == nil and msg:match("^splice "), tostring(msg))
      print(table.concat({"splice", tostring(n), code, tostring(pend),
        tostring(blk == blk0)}, " "))
    ]])
    local code = out:match("splice nil (%u+) ")
    assert.is_truthy(code == "EPIPE" or code == "ECONNRESET", out)
    assert.is_truthy(out:match(" false true\n"), out)
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
      local _
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
