-- bsdsocket.tls against bad peers and faults: garbage instead of a
-- handshake, closes mid-handshake and mid-record, truncation without
-- close_notify, stalls; and many handshakes leaving descriptors and memory
-- flat (BSDSOCKET_TLS_N handshakes, default 10,000; valgrind scales it down).
local S = require "bsdsocket"
local loop = require "bsdsocket.loop"
local certs = require "helpers.certs"
local bg = require "helpers.bg"
local net = require "helpers.net"

local ok_tls, tls = pcall(require, "bsdsocket.tls")
if not ok_tls then
  describe("bsdsocket.tls faults", function()
    pending("not built (no OpenSSL headers): " .. tostring(tls))
  end)
  return
end

local c

-- a plain TCP server task doing bad(conn) to one connection, and a TLS
-- client task doing f(t); returns f's results
local function against(bad, f, ctx)
  local srv = assert(S.tcp_listen("127.0.0.1", 0))
  local port = srv:getsockname().port
  local res
  loop.spawn(function()
    local conn = assert(srv:accept())
    bad(conn)
    conn:close()
  end)
  loop.spawn(function()
    local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), ctx or c:client_ctx(),
      { servername = "localhost" })
    t:settimeout(5)
    res = table.pack(f(t))
    t:close()
  end)
  assert(loop.run(10))
  srv:close()
  return res
end

local function handshake(t) return t:handshake() end

-- a deterministic byte string
local function noise(n, seed)
  local x, out = seed, {}
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    out[i] = string.char(x >> 16 & 0xFF)
  end
  return table.concat(out)
end

-- pid's resident set in KiB
local function rss()
  local f = assert(io.open("/proc/self/status"))
  local kb = tonumber(f:read("a"):match("VmRSS:%s*(%d+)"))
  f:close()
  return kb
end

describe("bsdsocket.tls faults", function()
  setup(function() c = certs.make() end)
  teardown(function() if c then c:remove() end end)

  describe("a peer that does not speak TLS", function()
    it("random bytes instead of a handshake: TLS_PROTOCOL, never a crash", function()
      for seed = 1, 20 do
        local r = against(function(conn)
          conn:recv(4096)
          conn:sendall(noise(64 + seed * 37, seed))
        end, handshake)
        assert.is_nil(r[1])
        assert.is_true(r[3] == "TLS_PROTOCOL" or r[3] == "TLS_HANDSHAKE", tostring(r[2]))
        assert.matches("^tls handshake localhost:%d+: ", r[2])
      end
      -- a first byte that is no TLS record type at all
      local r = against(function(conn)
        conn:recv(4096)
        conn:sendall("\1\2\3\4\5\6\7\8\9\10")
      end, handshake)
      assert.equal("TLS_PROTOCOL", r[3], r[2])
    end)

    it("a plain HTTP answer: TLS_PROTOCOL", function()
      local r = against(function(conn)
        conn:recv(4096)
        conn:sendall("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
      end, handshake)
      assert.is_nil(r[1])
      assert.equal("TLS_PROTOCOL", r[3])
      assert.matches("wrong version number", r[2])
    end)

    it("our server given a plain HTTP request or garbage: TLS_PROTOCOL", function()
      for _, bytes in ipairs { "GET / HTTP/1.1\r\nHost: x\r\n\r\n", noise(300, 7) } do
        local srv = assert(S.tcp_listen("127.0.0.1", 0))
        local port = srv:getsockname().port
        local res
        loop.spawn(function()
          local t = tls.wrap(assert(srv:accept()), c:server_ctx())
          t:settimeout(5)
          res = table.pack(t:handshake())
          t:close()
        end)
        loop.spawn(function()
          local s = assert(S.tcp_connect("127.0.0.1", port))
          s:sendall(bytes)
          s:settimeout(5)
          s:recv(100)
          s:close()
        end)
        assert(loop.run(10))
        srv:close()
        assert.is_nil(res[1])
        assert.equal("TLS_PROTOCOL", res[3], res[2])
      end
    end)
  end)

  describe("a peer that goes away", function()
    it("closing mid-handshake: TLS_HANDSHAKE", function()
      local r = against(function(conn) conn:recv(4096) end, handshake)
      assert.is_nil(r[1])
      assert.equal("TLS_HANDSHAKE", r[3])
      assert.matches("connection closed during the handshake", r[2])
      -- and before reading anything at all (a reset, perhaps)
      r = against(function() end, handshake)
      assert.is_nil(r[1])
      assert.is_truthy(r[3] == "TLS_HANDSHAKE" or r[3] == "ECONNRESET" or r[3] == "EPIPE", r[3])
    end)

    it("closing mid-record: TLS_TRUNCATED", function()
      local h = bg.pypeer({ "fault", c.server_cert, c.server_key, "midrecord" })
      finally(h.cleanup)
      local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", h:port(), 5)), c:client_ctx(),
        { servername = "localhost" })
      local ok, msg, code = t:recv(100)
      assert.is_nil(ok)
      assert.equal("TLS_TRUNCATED", code)
      assert.matches("^tls recv localhost:%d+: connection closed without close_notify", msg)
      t:close()
    end)

    it("a TCP close without close_notify: TLS_TRUNCATED after the data, or \"\" when allowed", function()
      local h = bg.pypeer({ "fault", c.server_cert, c.server_key, "truncate" })
      finally(h.cleanup)
      local port = h:port()
      local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port, 5)), c:client_ctx(),
        { servername = "localhost" })
      assert.equal("hello", t:recv(100))
      local ok, _, code = t:recv(100)
      assert.is_nil(ok)
      assert.equal("TLS_TRUNCATED", code)
      t:close()
      t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port, 5)),
        c:client_ctx { allow_truncation = true }, { servername = "localhost" })
      assert.equal("hello", t:recv(100))
      assert.equal("", t:recv(100))
      t:close()
      -- recvall keeps what came
      t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port, 5)), c:client_ctx(),
        { servername = "localhost" })
      local res = table.pack(t:recvall(10))
      assert.is_nil(res[1])
      assert.equal("TLS_TRUNCATED", res[3])
      assert.equal("hello", res[4])
      t:close()
    end)

    it("a stalled peer: the read times out (ETIMEDOUT), the stream stays usable for close", function()
      local h = bg.pypeer({ "fault", c.server_cert, c.server_key, "stall" })
      finally(h.cleanup)
      local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", h:port(), 5)), c:client_ctx(),
        { servername = "localhost" })
      t:settimeout(0.3)
      assert(t:handshake())
      local dt, ok, msg, code = net.timed(t.recv, t, 10)
      assert.is_nil(ok)
      assert.equal("ETIMEDOUT", code)
      assert.matches("^tls recv localhost:%d+: ", msg)
      assert.is_true(dt > 0.25 and dt < 3)
      assert(t:close())
    end)

    it("a write to a peer that reset: an errno result (EPIPE or ECONNRESET), no SIGPIPE", function()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local res
      loop.spawn(function()
        local t = tls.wrap(assert(srv:accept()), c:server_ctx())
        t:handshake()
        t:close()
      end)
      loop.spawn(function()
        local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), c:client_ctx(),
          { servername = "localhost" })
        assert(t:handshake())
        loop.sleep(0.2)
        local chunk = string.rep("x", 65536)
        for _ = 1, 100 do
          res = table.pack(t:sendall(chunk))
          if not res[1] then break end
        end
        t:close()
      end)
      assert(loop.run(10))
      srv:close()
      assert.is_nil(res[1])
      assert.is_truthy(res[3] == "EPIPE" or res[3] == "ECONNRESET", res[3])
    end)
  end)

  describe("resources", function()
    it("many full handshakes leave descriptors and memory flat", function()
      local n = tonumber(os.getenv("BSDSOCKET_TLS_N") or "")
        or (os.getenv("BSDSOCKET_VALGRIND") and 200 or 10000)
      local sctx, cctx = c:server_ctx(), c:client_ctx()
      local srv = assert(S.tcp_listen("127.0.0.1", 0))
      local port = srv:getsockname().port
      local function batch(count)
        loop.spawn(function()
          for _ = 1, count do
            local t = tls.wrap(assert(srv:accept()), sctx)
            assert(t:handshake())
            t:close()
          end
        end)
        loop.spawn(function()
          for _ = 1, count do
            local t = tls.wrap(assert(S.tcp_connect("127.0.0.1", port)), cctx,
              { servername = "localhost" })
            assert(t:handshake())
            t:close()
          end
        end)
        assert(loop.run(600))
      end
      local warm = math.max(n // 10, 10)
      batch(warm)  -- caches and allocator pools reach their size
      collectgarbage()
      local before, kb0 = net.fds(), rss()
      local dt = net.timed(batch, n)
      collectgarbage()
      local kb1 = rss()
      assert.same({}, net.newfds(before))
      io.stderr:write(("\n[tls] %d handshakes in %.1f s (%.0f/s, both ends); RSS %d -> %d KiB\n")
        :format(n, dt, n / dt, kb0, kb1))
      assert.is_true(kb1 - kb0 < 8192, ("RSS grew from %d to %d KiB"):format(kb0, kb1))
      srv:close()
    end)
  end)
end)
