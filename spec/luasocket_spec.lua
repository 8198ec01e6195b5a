-- luacheck: std +busted
-- bsdsocket.luasocket: LuaSocket 3.x's API on bsdsocket. Each case shows a
-- LuaSocket idiom and what it returns here; LuaSocket's own test suite runs
-- in luasocket_suite_spec.lua, socket.http in luasocket_http_spec.lua.
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local net = require "helpers.net"

local saved = {}
local socket

-- a connected pair of LuaSocket client objects: client, accepted
local function pair()
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  local c = assert(socket.connect("127.0.0.1", port))
  local a = assert(server:accept())
  server:close()
  return c, a
end

-- a port nobody listens on
local function closedport()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return port
end

describe("bsdsocket.luasocket", function()
  setup(function()
    saved.socket, saved.core = package.loaded.socket, package.loaded["socket.core"]
    socket = require "bsdsocket.luasocket"
  end)
  teardown(function()
    package.loaded.socket, package.loaded["socket.core"] = saved.socket, saved.core
  end)

  describe("the module", function()
    it("installs itself as socket and socket.core, one table as in LuaSocket", function()
      assert.equal(socket, package.loaded.socket)
      assert.equal(socket, package.loaded["socket.core"])
      assert.is_true(socket._BSDSOCKET)
      assert.matches("^LuaSocket 3", socket._VERSION)
      assert.equal(-1, socket._SOCKETINVALID)
      assert.equal(8192, socket._DATAGRAMSIZE)
      for _, name in ipairs({ "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "connect",
        "connect4", "connect6", "bind", "select", "sleep", "gettime", "skip", "newtry",
        "protect", "try", "choose", "sink", "source" }) do
        assert.equal("function", type(socket[name]), name)
      end
      for _, name in ipairs({ "toip", "tohostname", "gethostname", "getaddrinfo", "getnameinfo" }) do
        assert.equal("function", type(socket.dns[name]), name)
      end
    end)

    it("has no descriptor limit: _SETSIZE is the process's limit, not FD_SETSIZE", function()
      assert.is_true(socket._SETSIZE > 1024)
    end)

    it("is in debug mode only when LUASOCKET_DEBUG is set", function()
      local code = [[
        local socket = require "bsdsocket.luasocket"
        local s = assert(socket.bind("127.0.0.1", 0))
        local ip, port = s:getsockname()
        local c = assert(socket.connect(ip, port))
        local a = s:accept()
        print(tostring(socket._DEBUG), select("#", c:send("hi\n")), select("#", a:receive()))
      ]]
      local out = net.run_lua(code)
      assert.equal("nil\t1\t1\n", out)
      local d = net.tmpdir()
      local f = assert(io.open(d:path("c.lua"), "w"))
      f:write(code)
      f:close()
      local p = io.popen("LUASOCKET_DEBUG=1 " .. net.childenv() .. " " .. net.luacmd(10) .. " "
        .. net.shquote(d.dir .. "/c.lua") .. " 2>&1")
      out = p:read("a")
      p:close()
      d:remove()
      -- debug mode: data, err, partial and the elapsed seconds
      assert.equal("true\t4\t4\n", out)
    end)
  end)

  describe("objects", function()
    it("have LuaSocket's classes and change class as LuaSocket's do", function()
      local m = socket.tcp()
      assert.equal("tcp{master}", m.class)
      assert.matches("^tcp{master}: 0x%x+$", tostring(m))
      assert.equal(-1, m:getfd())        -- socket.tcp() picks its family at bind/connect
      assert.equal(1, m:bind("127.0.0.1", 0))
      assert.is_true(m:getfd() >= 0)
      assert.equal(1, m:listen())
      assert.equal("tcp{server}", m.class)
      local c = socket.tcp4()
      assert.is_true(c:getfd() >= 0)
      assert.equal(1, c:connect(m:getsockname()))
      assert.equal("tcp{client}", c.class)
      local a = assert(m:accept())
      assert.equal("tcp{client}", a.class)
      assert.equal("inet4", a:getfamily())
      assert.has_error(function() m:receive() end,
        "calling 'receive' on bad self (tcp{client} expected, got tcp{server})")
      assert.has_error(function() c:accept() end)
      assert.equal("udp{unconnected}", socket.udp().class)
      for _, o in ipairs({ m, c, a }) do assert.equal(1, o:close()) end
      assert.equal(-1, c:getfd())
    end)

    it("answer getsockname/getpeername with ip, port, family", function()
      local c, a = pair()
      local ip, port, fam = a:getsockname()
      assert.equal("127.0.0.1", ip)
      assert.equal("inet", fam)
      local pip, pport = c:getpeername()
      assert.equal(ip, pip)
      assert.equal(port, pport)
      c:close() a:close()
    end)

    it("count bytes in getstats and take them back with setstats", function()
      local c, a = pair()
      assert.equal(5, c:send("hello"))
      assert.equal("hel", a:receive(3))
      local r, s, age = c:getstats()
      assert.equal(0, r)
      assert.equal(5, s)
      assert.is_true(age >= 0)
      assert.equal(3, (a:getstats()))
      assert.equal(1, a:setstats(10, 20, 0))
      assert.equal(20, select(2, a:getstats()))
      c:close() a:close()
    end)

    it("hand their descriptor over with getfd/setfd, as LuaSec does", function()
      local c, a = pair()
      local fd = c:getfd()
      local other = socket.tcp()
      other:setfd(fd)
      c:setfd(-1)                       -- releases without closing
      assert.equal(-1, c:getfd())
      assert.equal(fd, other:getfd())
      assert.same({ a:getsockname() }, { other:getpeername() })
      a:send("x")
      assert.equal(other, socket.select({ other }, nil, 1)[1])
      other:close() a:close()
    end)
  end)

  describe("receive", function()
    local c, a
    before_each(function() c, a = pair() end)
    after_each(function() c:close() a:close() end)

    it("reads lines with *l (the default), dropping \\r", function()
      c:send("unix\ndos\r\nlast")
      assert.equal("unix", a:receive())
      assert.equal("dos", a:receive("*l"))
      assert.is_true(a:dirty())            -- "last" waits in the buffer
      c:close()
      local line, err, partial = a:receive("*l")
      assert.is_nil(line)
      assert.equal("closed", err)
      assert.equal("last", partial)
    end)

    it("reads n bytes, keeping what it read beyond a line in the buffer", function()
      c:send("line\nrawbytes")
      assert.equal("line", a:receive())
      assert.equal("raw", a:receive(3))
      assert.equal("bytes", a:receive(5))
    end)

    it("reads everything up to the peer's close with *a", function()
      c:send("all of ")
      c:send("it")
      c:close()
      assert.equal("all of it", a:receive("*a"))
      local data, err, partial = a:receive("*a")
      assert.is_nil(data)
      assert.equal("closed", err)
      assert.equal("", partial)
    end)

    it("puts the prefix in front and counts it in n", function()
      c:send("7890")
      assert.equal("1234567890", a:receive(10, "123456"))
      assert.equal("87654321", a:receive(4, "87654321"))   -- prefix already long enough
      c:send("tail\n")
      assert.equal("head:tail", a:receive("*l", "head:"))
    end)

    it("returns the partial result on a timeout, to be passed back as prefix", function()
      a:settimeout(0.05)
      c:send("abc")
      local data, err, partial = a:receive(6)
      assert.is_nil(data)
      assert.equal("timeout", err)
      assert.equal("abc", partial)
      c:send("def")
      assert.equal("abcdef", a:receive(6, partial))
      c:send("no newline yet")
      data, err, partial = a:receive("*l")
      assert.same({ nil, "timeout", "no newline yet" }, { data, err, partial })
    end)

    it("raises on an invalid pattern", function()
      assert.has_error(function() a:receive("*x") end)
      assert.has_error(function() a:receive(-1) end)
    end)

    it("answers closed on a closed object, with the prefix as partial", function()
      a:close()
      assert.same({ nil, "closed", "" }, { a:receive() })
      assert.same({ nil, "closed", "pre" }, { a:receive(5, "pre") })
      assert.same({ nil, "closed", 0 }, { a:send("x") })
    end)

    it("reads an 8 MB line across many reads", function()
      local big = ("0123456789"):rep(800000)
      local done = false
      loop.spawn(function() assert(c:send(big .. "\n")) done = true end)
      loop.spawn(function() assert.equal(big, a:receive()) end)
      assert.is_true(loop.run(20))
      assert.is_true(done)
    end)
  end)

  describe("send", function()
    it("sends data:sub(i, j) and returns the index of the last byte sent", function()
      local c, a = pair()
      assert.equal(3, c:send("abcdef", 2, 3))
      assert.equal(6, c:send("abcdef", -3))
      assert.equal(0, c:send(""))
      assert.equal("bcdef", a:receive(5))
      c:close() a:close()
    end)

    it("reports closed with the count sent once the peer is gone", function()
      local c, a = pair()
      a:close()
      local n, err, last
      for _ = 1, 100 do
        n, err, last = c:send(("x"):rep(65536))
        if not n then break end
      end
      assert.is_nil(n)
      assert.equal("closed", err)
      assert.equal("number", type(last))
      c:close()
    end)

    it("returns timeout and the last index sent on a full non-blocking socket", function()
      local c, a = pair()
      c:settimeout(0)
      local big = ("x"):rep(64 * 1024 * 1024)
      local n, err, last = c:send(big)
      assert.is_nil(n)
      assert.equal("timeout", err)
      assert.is_true(last > 0 and last < #big)
      c:close() a:close()
    end)
  end)

  describe("timeouts", function()
    it("settimeout(t) bounds each wait, settimeout(t, 't') the whole call", function()
      local c, a = pair()
      assert.equal(1, a:settimeout(0.1))
      local t0 = S.monotime()
      assert.same({ nil, "timeout", "" }, { a:receive() })
      assert.is_true(S.monotime() - t0 >= 0.09)
      assert.equal(1, a:settimeout(0.2, "t"))
      assert.same({ 0.1, 0.2 }, { a:gettimeout() })
      -- bytes arriving every 50 ms keep a blocking timeout alive, not a total one
      loop.spawn(function()
        for _ = 1, 8 do loop.sleep(0.05) c:send("x") end
      end)
      loop.spawn(function()
        local data, err, partial = a:receive(8)
        assert.is_nil(data)
        assert.equal("timeout", err)
        assert.is_true(#partial < 8)         -- the writer needs 400 ms for all 8
      end)
      assert.is_true(loop.run(5))
      c:close() a:close()
    end)

    it("settimeout(nil) or a negative one blocks; accept times out with 'timeout'", function()
      local s = assert(socket.bind("127.0.0.1", 0))
      assert.equal(1, s:settimeout(-1))
      assert.equal(1, s:settimeout(1e12))         -- "forever" in seconds is fine too
      assert.equal(1, s:settimeout(0.05))
      assert.same({ nil, "timeout" }, { s:accept() })
      s:close()
    end)
  end)

  describe("error strings", function()
    it("are LuaSocket's", function()
      assert.same({ nil, "connection refused" }, { socket.connect("127.0.0.1", closedport()) })
      local s = assert(socket.bind("127.0.0.1", 0))
      local ip, port = s:getsockname()
      local t = socket.tcp()
      assert.same({ nil, "address already in use" }, { t:bind(ip, port) })
      assert.same({ nil, "host or service not provided, or not known" },
        { socket.connect("host.is.invalid", 80) })
      assert.same({ nil, "host not found" }, { socket.dns.toip("host.is.invalid") })
      local c = assert(socket.connect(ip, port))
      assert.same({ nil, "already connected" }, { c:connect(ip, port) })
      c:close() s:close()
    end)

    it("make non-blocking connects look like LuaSocket's", function()
      local s = assert(socket.bind("127.0.0.1", 0))
      local c = socket.tcp()
      c:settimeout(0)
      local ok, err = c:connect(s:getsockname())
      if not ok then
        assert.equal("timeout", err)
        local _, w = socket.select(nil, { c }, 5)
        assert.equal(c, w[1])
        assert.equal(1, c:connect(s:getsockname()))  -- the second call reports success
      end
      assert.equal("tcp{client}", c.class)
      c:close() s:close()
    end)
  end)

  describe("options", function()
    it("take LuaSocket's names and value shapes", function()
      local c, a = pair()
      assert.equal(1, c:setoption("tcp-nodelay", true))
      assert.is_true(c:getoption("tcp-nodelay"))
      assert.equal(1, c:setoption("keepalive", true))
      assert.is_true(c:getoption("keepalive"))
      assert.equal(1, c:setoption("reuseaddr", true))
      assert.equal(1, c:setoption("linger", { on = true, timeout = 3 }))
      assert.same({ on = true, timeout = 3 }, c:getoption("linger"))
      assert.equal(1, c:setoption("send-buffer-size", 65536))
      assert.equal("number", type(c:getoption("send-buffer-size")))
      assert.is_nil(c:getoption("error"))
      assert.has_error(function() c:setoption("bogus", 1) end,
        "bad argument #1 to 'setoption' (unsupported option `bogus')")
      local u = assert(socket.udp4())
      assert.equal(1, u:setoption("broadcast", true))
      assert.is_true(u:getoption("broadcast"))
      assert.equal(1, u:setoption("ip-multicast-ttl", 4))
      c:close() a:close() u:close()
    end)
  end)

  describe("UDP", function()
    it("sends and receives datagrams, connected and not", function()
      local s = assert(socket.udp())
      assert.equal(1, s:setsockname("127.0.0.1", 0))
      local ip, port = s:getsockname()
      local u = assert(socket.udp())
      assert.equal(5, u:sendto("dgram", ip, port))
      local data, fromip, fromport = s:receivefrom()
      assert.equal("dgram", data)
      assert.equal("127.0.0.1", fromip)
      assert.equal(select(2, u:getsockname()), fromport)
      assert.equal(1, u:setpeername(ip, port))
      assert.equal("udp{connected}", u.class)
      assert.equal(3, u:send("one"))
      assert.equal("one", s:receive())
      assert.equal(ip, (u:getpeername()))
      assert.equal(1, u:setpeername("*"))
      assert.equal("udp{unconnected}", u.class)
      s:settimeout(0.05)
      assert.same({ nil, "timeout" }, { s:receive() })
      s:close() u:close()
    end)

    it("reports connection refused on a connected socket", function()
      local u = assert(socket.udp())
      assert.equal(1, u:setpeername("127.0.0.1", closedport()))
      u:settimeout(1)
      u:send("anyone?")
      assert.same({ nil, "connection refused" }, { u:receive() })
      u:close()
    end)
  end)

  describe("select", function()
    it("returns ready sockets both as an array and as a set, or timeout", function()
      local c, a = pair()
      local r, w, err = socket.select({ a }, nil, 0.01)
      assert.same({}, r)
      assert.same({}, w)
      assert.equal("timeout", err)
      c:send("x")
      r, w, err = socket.select({ c, a }, { c }, 1)
      assert.is_nil(err)
      assert.equal(a, r[1])
      assert.equal(1, r[a])
      assert.equal(1, #r)
      assert.equal(c, w[1])
      assert.equal(1, w[c])
      c:close() a:close()
    end)

    it("counts buffered data as readable (dirty)", function()
      local c, a = pair()
      c:send("one\ntwo\n")
      assert.equal("one", a:receive())
      assert.is_true(a:dirty())
      local r = socket.select({ a }, nil, 0)
      assert.equal(a, r[1])
      c:close() a:close()
    end)

    it("skips closed sockets and raises on what is not a table", function()
      local u = socket.udp4()
      u:close()
      assert.same({ {}, {}, "timeout" }, { socket.select({ u }, { u }, 0.01) })
      assert.has_error(function() socket.select("wrong", nil, 0) end)
      assert.has_error(function() socket.select({}, 1, 0) end)
    end)

    it("watches objects of other libraries through getfd and dirty", function()
      local c, a = pair()
      local foreign = { getfd = function() return a:getfd() end, dirty = function() return false end }
      c:send("x")
      local r = socket.select({ foreign }, nil, 1)
      assert.equal(foreign, r[1])
      c:close() a:close()
    end)

    it("keeps nothing alive that a long-lived set no longer holds", function()
      local server = assert(socket.bind("127.0.0.1", 0))
      local ip, port = server:getsockname()
      local set = { server }
      local alive = setmetatable({}, { __mode = "k" })
      for _ = 1, 50 do
        local c = assert(socket.connect(ip, port))
        local a = assert(server:accept())
        alive[a] = true
        set[2] = a
        c:send("x")
        assert.equal(1, socket.select(set, nil, 1)[a])
        set[2] = nil
        a:close() c:close()
      end
      collectgarbage() collectgarbage()
      assert.is_nil(next(alive))
      server:close()
    end)

    it("waits on 5,000 sockets, descriptors past 1,024 included", function()
      local n = 5000
      local socks = {}
      local ok, err = pcall(function()
        for i = 1, n do
          socks[i] = assert(socket.udp4())
          assert(socks[i]:setsockname("127.0.0.1", 0))
        end
      end)
      assert(ok, "could not open 5,000 sockets (ulimit -n?): " .. tostring(err))
      assert.is_true(socks[n]:getfd() > 1024)
      -- Nothing is ready, unless another spec file's process (they run side
      -- by side) sent a stray datagram to a port that one of these 5,000
      -- took over: such a socket really holds a datagram.
      local r, _, e = socket.select(socks, nil, 0)
      for _, s in ipairs(r) do
        s:settimeout(0)
        assert(s:receive(), "reported readable, holds nothing")
        s:settimeout(nil)
      end
      assert.equal(#r == 0 and "timeout" or nil, e)
      local sender = socket.udp4()
      for _, i in ipairs({ 1, 2500, n }) do
        local ip, port = socks[i]:getsockname()
        sender:sendto("ping", ip, port)
      end
      local got = {}
      for _ = 1, 10 do                      -- loopback delivery is immediate; bounded
        r = socket.select(socks, nil, 1)
        for _, s in ipairs(r) do got[s] = s:receive() end
        if got[socks[n]] and got[socks[1]] and got[socks[2500]] then break end
      end
      assert.equal("ping", got[socks[1]])
      assert.equal("ping", got[socks[2500]])
      assert.equal("ping", got[socks[n]])
      sender:close()
      for i = 1, n do socks[i]:close() end
    end)
  end)

  describe("helpers", function()
    it("skip, newtry, protect, try", function()
      assert.same({ "b", "c" }, { socket.skip(1, "a", "b", "c") })
      local finalized = false
      local try = socket.newtry(function() finalized = true end)
      local f = socket.protect(function(x)
        local v = try(x, "failed")
        return v * 2
      end)
      assert.equal(4, f(2))
      assert.is_false(finalized)
      assert.same({ nil, "failed" }, { f(nil) })
      assert.is_true(finalized)
      -- a real error goes through protect unchanged
      assert.has_error(socket.protect(function() error("real", 0) end), "real")
      assert.same({ 1, 2 }, { socket.try(1, 2) })
    end)

    it("gettime is the wall clock, sleep waits", function()
      assert.is_true(math.abs(socket.gettime() - os.time()) < 2)
      local t0 = socket.gettime()
      socket.sleep(0.05)
      assert.is_true(socket.gettime() - t0 >= 0.04)
    end)

    it("dns answers for localhost and numeric addresses", function()
      local ip, resolved = socket.dns.toip("localhost")
      assert.equal("127.0.0.1", ip)
      assert.equal("table", type(resolved.ip))
      local list = assert(socket.dns.getaddrinfo("127.0.0.1"))
      assert.same({ family = "inet", addr = "127.0.0.1" }, list[1])
      assert.equal("string", type(socket.dns.gethostname()))
      local names, service = socket.dns.getnameinfo("127.0.0.1", 80)
      assert.equal("table", type(names))
      assert.equal("http", service)
    end)

    it("sources and sinks move data the LTN12 way", function()
      local c, a = pair()
      local sink = socket.sink("close-when-done", c)
      assert.equal(5, sink("hello"))
      assert.equal(1, sink(nil))                -- closes c
      local src = socket.source("until-closed", a)
      local parts = {}
      for _ = 1, 10 do
        local chunk = src()
        if not chunk then break end
        parts[#parts + 1] = chunk
      end
      assert.equal("hello", table.concat(parts))
      assert.has_error(function() socket.sink("nope", c) end)
    end)
  end)

  describe("inside bsdsocket.loop tasks", function()
    it("accept, connect, receive and send yield instead of blocking", function()
      local server = assert(socket.bind("127.0.0.1", 0))
      local _, port = server:getsockname()
      local answers = {}
      loop.spawn(function()
        for _ = 1, 3 do
          local c = assert(server:accept())
          loop.spawn(function()
            local line = c:receive()
            c:send(line:upper() .. "\n")
            c:close()
          end)
        end
      end)
      for i = 1, 3 do
        loop.spawn(function()
          local c = assert(socket.connect("127.0.0.1", port))
          socket.sleep(0.01 * (4 - i))           -- a task's sleep: the others go on
          c:send("client " .. i .. "\n")
          answers[i] = c:receive()
          c:close()
        end)
      end
      assert.is_true(loop.run(10))
      assert.same({ "CLIENT 1", "CLIENT 2", "CLIENT 3" }, answers)
      server:close()
    end)

    it("select waits in the loop, and its timeout too", function()
      local c, a = pair()
      local got, timedout
      loop.spawn(function()
        local _, _, err = socket.select({ a }, nil, 0.05)
        timedout = err
        local r = socket.select({ a }, nil, 5)
        got = r[1] and r[1]:receive()
      end)
      loop.spawn(function()
        loop.sleep(0.1)
        c:send("late\n")
      end)
      assert.is_true(loop.run(10))
      assert.equal("timeout", timedout)
      assert.equal("late", got)
      c:close() a:close()
    end)

    it("select on one socket in a task: buffered data at once; closed by another task meanwhile: timeout",
       function()
      local c, a = pair()
      local c2, a2 = pair()
      c:send("one\ntwo\n")
      local got, closedr, closederr
      loop.spawn(function()
        assert.equal("one", a:receive())        -- "two" stays buffered
        local r = socket.select({ a }, nil, 5)
        got = r[1] == a and a:receive()
        local r2, _, err = socket.select({ a2 }, nil, 0.3)
        closedr, closederr = #r2, err
      end)
      loop.spawn(function()
        loop.sleep(0.05)
        a2:close()
      end)
      assert.is_true(loop.run(10))
      assert.equal("two", got)
      assert.equal(0, closedr)
      assert.equal("timeout", closederr)
      for _, s in ipairs({ c, a, c2 }) do s:close() end
    end)

    it("tasks selecting at the same time each get their own sockets", function()
      local c1, a1 = pair()
      local c2, a2 = pair()
      local got = {}
      for i, a in ipairs({ a1, a2 }) do
        loop.spawn(function()
          local r = socket.select({ a }, nil, 5)
          got[i] = r[1] == a and a:receive()
        end)
      end
      loop.spawn(function()
        loop.sleep(0.02) c2:send("two\n")
        loop.sleep(0.02) c1:send("one\n")
      end)
      assert.is_true(loop.run(10))
      assert.same({ "one", "two" }, got)
      for _, s in ipairs({ c1, a1, c2, a2 }) do s:close() end
    end)

    it("a call waiting on an object that another task closes returns 'closed'", function()
      local c, a = pair()
      local c2, a2 = pair()
      local c3, a3 = pair()
      local server = assert(socket.bind("127.0.0.1", 0))
      local u = socket.udp()
      assert(u:setsockname("127.0.0.1", 0))
      local u2 = socket.udp()
      assert(u2:setsockname("127.0.0.1", 0))
      a3:setoption("send-buffer-size", 4096)
      local r = {}
      local function waiter(name, f) loop.spawn(function() r[name] = { f() } end) end
      waiter("receive(n)", function() return a:receive(10) end)
      waiter("receive *l", function() return a2:receive("*l") end)
      waiter("send", function() return a3:send(("x"):rep(8 << 20)) end)
      waiter("accept", function() return server:accept() end)
      waiter("udp receive", function() return u:receive() end)
      waiter("udp receivefrom", function() return u2:receivefrom() end)
      c:send("part")
      c2:send("half a line")
      loop.spawn(function()
        loop.sleep(0.1)
        for _, o in ipairs({ a, a2, a3, server, u, u2 }) do o:close() end
      end)
      assert.is_true(loop.run(10))
      assert.same({ nil, "closed", "part" }, r["receive(n)"])
      assert.same({ nil, "closed", "half a line" }, r["receive *l"])
      assert.equal("closed", r.send[2])
      assert.is_true(r.send[3] > 0 and r.send[3] < 8 << 20)
      assert.same({ nil, "closed" }, r.accept)
      assert.same({ nil, "closed" }, r["udp receive"])
      assert.same({ nil, "closed" }, r["udp receivefrom"])
      for _, o in ipairs({ c, c2, c3 }) do o:close() end
    end)

    it("receive(math.huge) reads until the timeout or the close, in a task too", function()
      local c, a = pair()
      c:send("xy")
      a:settimeout(0.1)
      assert.same({ nil, "timeout", "xy" }, { a:receive(math.huge) })
      a:settimeout(0.1, "t")
      assert.same({ nil, "timeout", "" }, { a:receive(math.huge) })
      c:send("z")
      local r
      loop.spawn(function()
        a:settimeout(nil, "t")
        r = { a:receive(math.huge, "pre") }
      end)
      loop.spawn(function()
        loop.sleep(0.05)
        c:send("tail")
        c:close()
      end)
      assert.is_true(loop.run(10))
      assert.same({ nil, "closed", "preztail" }, r)
      a:close()
    end)

    it("receive with a timeout returns 'timeout' while other tasks run", function()
      local c, a = pair()
      local ticks, result, ticks_then = 0, nil, nil
      loop.spawn(function()
        a:settimeout(0.5)
        result = { a:receive() }
        ticks_then = ticks                    -- the other task ran meanwhile
      end)
      loop.spawn(function()
        for _ = 1, 5 do loop.sleep(0.01) ticks = ticks + 1 end
      end)
      assert.is_true(loop.run(10))
      assert.same({ nil, "timeout", "" }, result)
      assert.equal(5, ticks_then)
      c:close() a:close()
    end)
  end)
end)
