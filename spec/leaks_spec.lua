-- Descriptor leaks: creating and dropping 100,000 sockets in every way a
-- script can (closed, forgotten and collected by __gc, <close> variables
-- leaving scope on an error) and going through the error paths (refused
-- connects, failed binds, failed Lua-layer connects) leaves the process's
-- open descriptors (/proc/PID/fd) where they started, in bounded time.
-- BSDSOCKET_LEAK_N scales the counts down (valgrind runs use it).
local S = require "bsdsocket"
local net = require "helpers.net"

local N = tonumber(os.getenv("BSDSOCKET_LEAK_N") or "") or 100000
local SMALL = math.max(N // 20, 100)     -- the slower paths (connects, accepts)

-- Runs f, then checks that no descriptor it opened stays open (only the
-- descriptors f opened count: others that garbage left by other specs closes
-- meanwhile do not; see net.newfds); returns the counts and the seconds f took.
local function nofdleak(label, f, limit)
  local set = net.fds()
  local dt = net.timed(f)
  local leaked, now = net.newfds(set)
  local before, after = net.count(set), net.count(now)
  print(("\nleaks: %-44s fds before=%d after=%d  %.2fs"):format(label, before, after, dt))
  assert.same({}, leaked, label .. ": descriptors leaked")
  assert.is_true(dt < (limit or 30), label .. " took " .. dt .. "s")
  return before, after, dt
end

describe("descriptor leaks", function()
  it(N .. " sockets created and closed", function()
    nofdleak(N .. " closed", function()
      for i = 1, N do
        local s = assert(S.socket(i % 2 == 0 and S.AF_INET or S.AF_UNIX, S.SOCK_STREAM))
        assert(s:close())
      end
    end)
  end)

  it(N .. " sockets forgotten and collected by __gc", function()
    nofdleak(N .. " unclosed, collected", function()
      for i = 1, N do
        local s = assert(S.socket(i % 3 == 0 and S.AF_INET6 or S.AF_INET, S.SOCK_DGRAM))
        if i % 1000 == 0 then assert(s:fileno() >= 0) end
      end
    end)
  end)

  it(N .. " <close> variables leaving scope on an error", function()
    nofdleak(N .. " <close> on error", function()
      for i = 1, N do
        local ok, err = pcall(function()
          local s <close> = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
          local t <close> = assert(S.socket(S.AF_UNIX, S.SOCK_DGRAM))
          error("boom " .. i .. " " .. s:fileno() .. " " .. t:fileno())
        end)
        assert(not ok and err:find("boom", 1, true))
      end
    end)
  end)

  it("socketpairs, detach/fromfd round trips, and pollers", function()
    nofdleak(N // 2 .. " socketpairs, half closed", function()
      for i = 1, N // 2 do
        local a, b = assert(S.socketpair())
        if i % 2 == 0 then a:close() b:close() end
      end
    end)
    nofdleak(SMALL .. " detach + fromfd", function()
      for _ = 1, SMALL do
        local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        local fd = s:detach()
        local t = assert(S.fromfd(fd))
        if fd % 2 == 0 then t:close() end
      end
    end)
    nofdleak(SMALL .. " fromfd of a non-socket", function()
      local f = assert(io.open("/dev/null"))
      for _ = 1, SMALL do
        -- stdin, whatever it is here, stays open and is not taken over
        local s, _, code = S.fromfd(0)
        if s then s:detach() else assert(code == "ENOTSOCK" or code == "EBADF", code) end
      end
      f:close()
    end)
    if S.poller then
      nofdleak(SMALL .. " pollers with registrations", function()
        for i = 1, SMALL do
          local p = S.poller()
          local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
          assert(p:add(s, "r"))
          if i % 2 == 0 then p:close() s:close() end
        end
      end)
    end
  end)

  it("error paths: refused connects, failed binds, failed tcp_connect/tcp_listen", function()
    local srv, port = net.server()
    srv:close()   -- a port nobody listens on
    nofdleak(SMALL .. " refused connects", function()
      for i = 1, SMALL do
        local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        if i % 2 == 0 then c:settimeout(1) end
        local ok, _, code = c:connect("127.0.0.1", port)
        assert(not ok and code == "ECONNREFUSED", code)
        if i % 3 ~= 0 then c:close() end
      end
    end)
    local busy, bport = net.server()
    finally(function() busy:close() end)
    nofdleak(SMALL .. " failed binds (EADDRINUSE)", function()
      for _ = 1, SMALL do
        local s = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        local ok, _, code = s:bind("127.0.0.1", bport)
        assert(not ok and code == "EADDRINUSE", code)
      end
    end)
    nofdleak(SMALL .. " failed bad-argument calls", function()
      for _ = 1, SMALL do
        local s = assert(S.socket(S.AF_UNIX, S.SOCK_STREAM))
        assert(not pcall(s.bind, s, ("x"):rep(200)))
      end
    end)
    if S.tcp_connect then
      nofdleak(SMALL // 10 .. " failed tcp_connect / tcp_listen", function()
        for _ = 1, SMALL // 10 do
          local c, _, code = S.tcp_connect("127.0.0.1", port)
          assert(not c and code == "ECONNREFUSED", code)
          local l, _, code2 = S.tcp_listen("127.0.0.1", bport)
          assert(not l and code2 == "EADDRINUSE", code2)
        end
      end)
    end
  end)

  it("accepted connections, closed and forgotten", function()
    local lsn <close>, port = net.server()
    nofdleak(SMALL .. " accepts", function()
      for i = 1, SMALL do
        local c = assert(S.socket(S.AF_INET, S.SOCK_STREAM))
        assert(c:connect("127.0.0.1", port))
        local a = assert(lsn:accept())
        if i % 2 == 0 then a:close() c:close() end
      end
    end)
    -- an accept that times out opens nothing
    lsn:settimeout(0)
    nofdleak("accept EAGAIN x" .. SMALL, function()
      for _ = 1, SMALL do assert.is_nil((lsn:accept())) end
    end)
  end)

  it("forgotten sockets never run a process out of descriptors (ulimit -n 256, child)", function()
    local d = net.tmpdir()
    finally(function() d:remove() end)
    local script, outfile = d:path("c.lua"), d:path("out")
    local f = assert(io.open(script, "w"))
    f:write(([[
      local S = require "bsdsocket"
      local fails, last = 0
      for i = 1, %d do
        local s, msg = S.socket(S.AF_INET, S.SOCK_STREAM)
        if not s then fails = fails + 1 last = msg end
        if i %% 4 == 0 then
          local a, b = S.socketpair()
          if not a then fails = fails + 1 last = b end
        end
      end
      print("fails " .. fails .. " " .. tostring(last))
    ]]):format(N))
    f:close()
    local okl = os.execute("ulimit -n 256; " .. net.childenv() .. " " .. net.luacmd(60) .. " "
      .. net.shquote(script) .. " > " .. net.shquote(outfile) .. " 2>&1")
    local res = assert(io.open(outfile)):read("a")
    print("\nleaks: " .. N .. " forgotten sockets under ulimit -n 256: " .. res)
    assert.is_true(okl, res)
    assert.equal("fails 0 nil\n", res)
  end)
end)
