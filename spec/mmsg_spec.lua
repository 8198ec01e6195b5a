-- luacheck: std +busted
-- sendmmsg/recvmmsg: many datagrams per system call (Linux).
local S = require "bsdsocket"

local function udp(bind)
  local s = assert(S.socket(S.AF_INET, S.SOCK_DGRAM))
  if bind then assert(s:bind("127.0.0.1", 0)) end
  return s
end

describe("sendmmsg/recvmmsg", function()
  it("sends a list of strings to a default address and receives them in one call", function()
    local r <close> = udp(true)
    local s <close> = udp(true)
    local list = {}
    for i = 1, 40 do list[i] = "datagram " .. i end
    assert.equal(40, s:sendmmsg(list, r:getsockname()))
    local got = r:recvmmsg(32, 100)
    assert.equal(32, #got)
    for i = 1, 32 do
      assert.equal("datagram " .. i, got[i].data)
      assert.equal(s:getsockname(), got[i].addr)
      assert.is_nil(got[i].truncated)
    end
    -- one sender: one addr object shared by its datagrams
    assert.is_true(rawequal(got[1].addr, got[32].addr))
    local rest = r:recvmmsg(32, 100)   -- only what is queued: does not wait for 32
    assert.equal(8, #rest)
    assert.equal("datagram 40", rest[8].data)
  end)

  it("takes {data, addr} and {data, host, port} entries, each with its own address", function()
    local r1 <close> = udp(true)
    local r2 <close> = udp(true)
    local s <close> = udp(true)
    local n = s:sendmmsg({
      { "to r1", r1:getsockname() },
      { "to r2", "127.0.0.1", r2:getsockname().port },
      "default",
    }, r1:getsockname())
    assert.equal(3, n)
    r1:settimeout(1); r2:settimeout(1)
    local a = r1:recvmmsg(8, 100)
    if #a < 2 then  -- the second may not be queued yet
      local more = r1:recvmmsg(8, 100)
      a[2] = more[1]
    end
    assert.equal("to r1", a[1].data)
    assert.equal("default", a[2].data)
    local b = r2:recvmmsg(8, 100)
    assert.equal("to r2", b[1].data)
    assert.equal(s:getsockname(), b[1].addr)
  end)

  it("sends on a connected socket without an address, and an empty list sends nothing", function()
    local r <close> = udp(true)
    local s <close> = udp(false)
    assert(s:connect(r:getsockname()))
    assert.equal(2, s:sendmmsg({ "a", "b" }))
    assert.equal(0, s:sendmmsg({}))
    local got = r:recvmmsg(4, 10)
    assert.equal(2, #got)
    assert.equal("b", got[2].data)
  end)

  it("gives different senders different addrs", function()
    local r <close> = udp(true)
    local s1 <close> = udp(true)
    local s2 <close> = udp(true)
    s1:sendto("1", r:getsockname())
    s2:sendto("2", r:getsockname())
    s1:sendto("3", r:getsockname())
    local got = r:recvmmsg(3, 10)
    assert.equal(3, #got)
    assert.equal(s1:getsockname(), got[1].addr)
    assert.equal(s2:getsockname(), got[2].addr)
    assert.equal(s1:getsockname(), got[3].addr)
  end)

  it("truncates datagrams longer than maxbytes and marks them", function()
    local r <close> = udp(true)
    local s <close> = udp(true)
    s:sendmmsg({ "short", string.rep("L", 1000), "" }, r:getsockname())
    local got = r:recvmmsg(3, 10)
    assert.equal("short", got[1].data)
    assert.equal(string.rep("L", 10), got[2].data)
    assert.is_true(got[2].truncated)
    assert.equal("", got[3].data)
    s:sendmmsg({ string.rep("T", 100) }, r:getsockname())
    got = r:recvmmsg(1, 10, S.MSG_TRUNC)   -- the kernel reports the real length: no overrun
    assert.equal(string.rep("T", 10), got[1].data)
  end)

  it("works on Unix datagram sockets with paths", function()
    local path = os.tmpname()
    os.remove(path)
    local r <close> = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    assert(r:bind(path))
    finally(function() os.remove(path) end)
    local s <close> = S.socket(S.AF_UNIX, S.SOCK_DGRAM)
    assert.equal(3, s:sendmmsg({ "x", { "y", path }, "z" }, path))
    local got = r:recvmmsg(8, 10)
    assert.equal(3, #got)
    assert.equal("y", got[2].data)
    assert.is_nil(got[1].addr)   -- an unbound sender has no address
  end)

  it("honours timeouts and non-blocking mode", function()
    local r <close> = udp(true)
    r:settimeout(0.05)
    local ok, msg, code = r:recvmmsg(8, 100)
    assert.is_nil(ok); assert.equal("ETIMEDOUT", code)
    assert.matches("^recvmmsg %(local 127.0.0.1:%d+%): timed out$", msg)
    r:settimeout(0)
    ok, msg, code = r:recvmmsg(8, 100)
    assert.matches("^recvmmsg", msg)
    assert.is_nil(ok); assert.equal("EAGAIN", code)
  end)

  it("yields to the loop inside a task and resumes", function()
    local r <close> = udp(true)
    local s <close> = udp(true)
    local co = coroutine.create(function() return r:recvmmsg(8, 100) end)
    S._tasks[co] = true
    local ok, what, sock, events = coroutine.resume(co)
    assert.is_true(ok); assert.equal("bsdsocket.wait", what)
    assert.equal(r, sock); assert.equal(1, events)
    s:sendmmsg({ "one", "two" }, r:getsockname())
    local ok2, got = coroutine.resume(co, true)
    assert.is_true(ok2)
    assert.equal("one", got[1].data)
    r:settimeout(3)
    co = coroutine.create(function() return r:recvmmsg(8, 100, 0) end)
    S._tasks[co] = true
    local _, _, _, _, deadline = coroutine.resume(co)
    assert.is_number(deadline)
    local _, res, msg, code = coroutine.resume(co, false)
    assert.is_nil(res); assert.equal("ETIMEDOUT", code); assert.matches("^recvmmsg", msg)
  end)

  it("reports errors: nothing sent gives nil, msg, code; a later failure gives the count", function()
    local s <close> = udp(true)
    local big = string.rep("x", 70000)
    local ok, msg, code = s:sendmmsg({ big }, "127.0.0.1", 9)
    assert.is_nil(ok); assert.equal("EMSGSIZE", code); assert.matches("^sendmmsg 127.0.0.1:9", msg)
    local r <close> = udp(true)
    assert.equal(1, s:sendmmsg({ "fine", big }, r:getsockname()))
    assert.equal("fine", r:recvmmsg(1, 10)[1].data)
  end)

  it("raises on programming mistakes", function()
    local s <close> = udp(true)
    assert.has_error(function() s:recvmmsg(0, 10) end)
    assert.has_error(function() s:recvmmsg(1025, 10) end)
    assert.has_error(function() s:recvmmsg(1, -1) end)
    assert.has_error(function() s:recvmmsg(1) end)
    assert.has_error(function() s:sendmmsg("x", s:getsockname()) end)
    assert.has_error(function() s:sendmmsg({ 42 }, s:getsockname()) end)
    assert.has_error(function() s:sendmmsg({ { 42 } }, s:getsockname()) end)
    assert.has_error(function() s:sendmmsg({ { "x", "127.0.0.1", 70000 } }) end)
    local c = udp(false)
    c:close()
    assert.has_error(function() c:recvmmsg(1, 10) end)
    assert.has_error(function() c:sendmmsg({ "x" }) end)
  end)

  it("handles more than 1024 datagrams per call and a large scratch", function()
    local r <close> = udp(true)
    assert(r:setsockopt(S.SOL_SOCKET, S.SO_RCVBUF, 4 * 1024 * 1024))
    local s <close> = udp(true)
    local list = {}
    for i = 1, 1100 do list[i] = tostring(i) end
    assert.equal(1100, s:sendmmsg(list, r:getsockname()))
    local total = 0
    r:settimeout(0.2)
    for _ = 1, 100 do
      local got = r:recvmmsg(1024, 8192)    -- 8 MiB: more than the kept scratch
      if not got then break end
      total = total + #got
      if total >= 1100 then break end
    end
    assert.is_true(total > 100)  -- the kernel may drop some once the buffer is full
  end)
end)
