-- Huge reads: recv(2^40) and friends neither allocate the size asked for
-- nor crash. API.md: recv reads at most min(maxbytes, 1 MiB) per call and
-- allocates no buffer of maxbytes up front; recvall(n) grows its buffer
-- with what arrives. Memory is measured two ways around each call: Lua's
-- own count with the collector stopped (so every byte allocated during the
-- call shows) and the process's resident set (/proc/self/status VmRSS).
local S = require "bsdsocket"
local net = require "helpers.net"

local MiB = 1 << 20
local LIMIT = MiB          -- API.md: 1 MiB per call

local function vmrss_kib()
  local f = io.open("/proc/self/status")
  if not f then                         -- no /proc: ps tells the same, in KiB
    local p = assert(io.popen("ps -o rss= -p " .. net.pid))
    local kib = assert(tonumber(p:read("a"):match("%d+")))
    p:close()
    return kib
  end
  local t = f:read("a")
  f:close()
  return assert(tonumber(t:match("VmRSS:%s*(%d+)")))
end

-- Runs f with the collector stopped; returns the KiB Lua allocated during
-- the call, the growth of VmRSS in KiB, and f's results (packed).
local function measure(f)
  collectgarbage()
  collectgarbage()
  local rss0 = vmrss_kib()
  collectgarbage("stop")
  local kb0 = collectgarbage("count")
  local r = table.pack(pcall(f))
  local kb1 = collectgarbage("count")
  local rss1 = vmrss_kib()
  collectgarbage("restart")
  collectgarbage()
  assert(r[1], r[2])
  return kb1 - kb0, rss1 - rss0, table.pack(table.unpack(r, 2, r.n))
end

local HUGE = { 1 << 40, math.maxinteger, (1 << 31) + 1, 1 << 32 }

describe("huge reads", function()
  for _, n in ipairs(HUGE) do
    it(("recv(%d) returns what is there and allocates at most the 1 MiB limit"):format(n), function()
      local a, b = S.socketpair()
      finally(function() net.closeall(a, b) end)
      assert(a:sendall("hello"))
      local lua_kib, rss_kib, r = measure(function() return b:recv(n) end)
      assert.equal("hello", r[1])
      assert.is_true(lua_kib < 1100 + 64, "Lua allocated " .. lua_kib .. " KiB")
      assert.is_true(rss_kib < 8 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
    end)
  end

  -- On Lua 5.5 such a string is the read buffer itself (an external string,
  -- whose body the collector cannot see unless recv tells it); 2000 of them
  -- left to the collector would hold 128 MiB.
  it("2000 dropped recv(65536) of 64 KiB: the resident set stays bounded",
     function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    local chunk, got = ("x"):rep(65536), 0
    collectgarbage()
    local rss0 = vmrss_kib()
    for _ = 1, 2000 do
      assert(a:sendall(chunk))
      repeat
        local s = assert(b:recv(65536))
        got = got + #s
      until got % 65536 == 0
    end
    local grown = vmrss_kib() - rss0
    assert.equal(2000 * 65536, got)
    -- ASan's quarantine and valgrind's allocator keep freed blocks: the
    -- resident set says nothing there (their own reports do the work)
    if not (os.getenv("BSDSOCKET_SANITIZE") or os.getenv("BSDSOCKET_VALGRIND")) then
      assert.is_true(grown < 32 * 1024, "VmRSS grew " .. grown .. " KiB")
    end
  end)

  it("recv(2^40) on a full TCP stream returns exactly 1 MiB, the documented limit", function()
    local cli, srv = net.tcp_pair()
    finally(function() net.closeall(cli, srv) end)
    cli:setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 4 * MiB)
    srv:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 4 * MiB)
    cli:settimeout(0)
    local chunk, queued = ("z"):rep(64 * 1024), 0
    -- queue as much as the kernel takes (well over 1 MiB on loopback)
    for _ = 1, 200 do
      local n = cli:send(chunk)
      if not n then break end
      queued = queued + n
    end
    assert.is_true(queued > LIMIT + 64 * 1024, "only " .. queued .. " bytes queued")
    net.sleep(0.05)
    local lua_kib, rss_kib, r = measure(function() return srv:recv(1 << 40) end)
    assert.equal(LIMIT, #r[1])
    assert.is_true(lua_kib < 2 * 1024 + 128, "Lua allocated " .. lua_kib .. " KiB")
    assert.is_true(rss_kib < 16 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
    -- and the rest comes with further calls, none above the limit
    local got = #r[1]
    srv:settimeout(1)
    while got < queued do
      local d = assert(srv:recv(1 << 40))
      assert.is_true(#d <= LIMIT)
      got = got + #d
    end
    assert.equal(queued, got)
  end)

  it("recvfrom(2^40) on UDP returns the datagram and allocates no more than the limit", function()
    local u <close>, port = net.udp()
    local c <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    local dgram = ("d"):rep(60000)
    assert(c:sendto(dgram, "127.0.0.1", port))
    local lua_kib, rss_kib, r = measure(function() return u:recvfrom(1 << 40) end)
    assert.equal(dgram, r[1])
    assert.equal(c:getsockname().port, r[2].port)
    assert.is_true(lua_kib < 1100 + 128, "Lua allocated " .. lua_kib .. " KiB")
    assert.is_true(rss_kib < 8 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
  end)

  it("recvall(2^40) grows with what arrives: EOF after 10 bytes gives nil, msg, EOF, partial", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    assert(a:sendall("0123456789"))
    a:close()
    local lua_kib, rss_kib, r = measure(function() return b:recvall(1 << 40) end)
    assert.is_nil(r[1])
    assert.matches("connection closed after 10 of 1099511627776 bytes", r[2], 1, true)
    assert.equal("EOF", r[3])
    assert.equal("0123456789", r[4])
    assert.is_true(lua_kib < 64, "Lua allocated " .. lua_kib .. " KiB")
    assert.is_true(rss_kib < 8 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
  end)

  it("recvall(2^40) with a timeout times out with the partial data, small", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    assert(a:sendall(("p"):rep(100000)))
    b:settimeout(0.2)
    local lua_kib, _, r = measure(function() return b:recvall(1 << 40) end)
    assert.is_nil(r[1])
    assert.equal("ETIMEDOUT", r[3])
    assert.equal(100000, #r[4])
    assert.is_true(lua_kib < 1024, "Lua allocated " .. lua_kib .. " KiB")
  end)

  it("recv(2^40) with no data and timeout 0 returns EAGAIN without allocating the size", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    b:settimeout(0)
    local lua_kib, rss_kib, r = measure(function() return b:recv(1 << 40) end)
    assert.is_nil(r[1])
    assert.equal("EAGAIN", r[3])
    assert.is_true(lua_kib < 1100, "Lua allocated " .. lua_kib .. " KiB")
    assert.is_true(rss_kib < 8 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
    a:close()
  end)

  it("recvmsg(2^40), where present, is held to the same limit", function()
    local a, b = S.socketpair()
    finally(function() net.closeall(a, b) end)
    if not b.recvmsg then return end
    assert(a:sendall("msg"))
    local lua_kib, rss_kib, r = measure(function() return b:recvmsg(1 << 40) end)
    assert.equal("msg", r[1])
    assert.is_true(lua_kib < 1100 + 128, "Lua allocated " .. lua_kib .. " KiB")
    assert.is_true(rss_kib < 8 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
  end)

  it("recvmmsg(1, 2^40), where present, allocates one 1 MiB slot, not 2^40", function()
    local u <close>, port = net.udp()
    if not u.recvmmsg then return end
    local c <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    assert(c:sendto("one", "127.0.0.1", port))
    local lua_kib, rss_kib, r = measure(function() return u:recvmmsg(1, 1 << 40) end)
    assert.equal("one", r[1][1].data)
    assert.is_true(lua_kib < 1100 + 128, "Lua allocated " .. lua_kib .. " KiB")
    assert.is_true(rss_kib < 8 * 1024, "VmRSS grew " .. rss_kib .. " KiB")
  end)

  -- recvmmsg's buffers are at most 16 MiB a call (API.md): recvmmsg(1024,
  -- 2^40) takes fewer datagrams per call instead of asking for 1 GiB, so it
  -- works even under a 768 MiB address-space limit.
  it("recvmmsg(1024, 2^40) caps its buffers at 16 MiB and works under a 768 MiB limit", function()
    local probe <close> = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
    if not probe.recvmmsg then return end
    -- AddressSanitizer reserves terabytes of address space: no ulimit -v there
    if os.getenv("BSDSOCKET_SANITIZE") then return end
    local d = net.tmpdir()
    finally(function() d:remove() end)
    local script, outfile = d:path("child.lua"), d:path("out")
    local f = assert(io.open(script, "w"))
    f:write([[
      local S = require "bsdsocket"
      local u = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
      assert(u:bind("127.0.0.1", 0))
      local c = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
      assert(c:sendto("x", u:getsockname()))
      assert(c:sendto("y", u:getsockname()))
      local before = collectgarbage("count")
      local r = u:recvmmsg(1024, 1 << 40)
      local grew = collectgarbage("count") - before
      print("got " .. #r .. " " .. r[1].data .. r[2].data .. " grew<=17MiB " .. tostring(grew < 17 * 1024))
      u:settimeout(0)
      local r2, _, code = u:recvmmsg(1, 1 << 40)
      print("next " .. (r2 and r2[1].data or code))
    ]])
    f:close()
    local ok = os.execute("ulimit -v 786432; " .. net.childenv() .. " " .. net.luacmd(20) .. " "
      .. net.shquote(script) .. " > " .. net.shquote(outfile) .. " 2>&1")
    local out = assert(io.open(outfile)):read("a")
    assert.is_true(ok, out)
    -- maxbytes is clamped to 1 MiB, so a call takes up to 16 datagrams
    assert.equal("got 2 xy grew<=17MiB true\nnext EAGAIN\n", out)
  end)

  it("a huge read in a child process neither crashes nor dies of memory", function()
    local out, ok = net.run_lua([[
      local S = require "bsdsocket"
      local a, b = S.socketpair()
      a:sendall("x")
      for _, n in ipairs({ 1 << 40, math.maxinteger, 1 << 62 }) do
        assert(b:recv(n) == "x")
        a:sendall("x")
      end
      print("ok")
    ]], 20)
    assert.is_true(ok, out)
    assert.equal("ok\n", out)
  end)
end)
